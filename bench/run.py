#!/usr/bin/env python3
"""rustgears benchmark harness (`make bench`).

Starts its own redis-server processes (127.0.0.1, free ports, --save '' --appendonly no) with
the module loaded, measures the workloads P1-P6, S1, the registration workloads R1-R5 and the
asynchronous-step workloads A1-A2 side by side with their anchors (Lua, a client-side redis-py
script, CPython, a server without the module, the same work without asynchrony), and writes

    bench/results/latest.json   every raw number (per run), parameters, machine, versions
    bench/results/summary.md    machine, versions, date and the table of figures
    bench/results/chart.svg     the figures against their targets and anchors

The table is printed to stdout too. The method is documented in docs/performance.md.

    python3 bench/run.py            full run (1,000,000 keys, 3-5 runs per figure, the flood R5)
    python3 bench/run.py --quick    smoke run (100,000 keys, 1-2 runs per figure, no R5)
    python3 bench/run.py --quick --only r1,r2,r3,r4 [--flood]   a subset of the workloads
    python3 bench/run.py --quick --only a1,a2                   the asynchronous-step workloads

Module: $RUSTGEARS_MODULE, else $CARGO_TARGET_DIR/release/librustgears.so (CARGO_TARGET_DIR
defaults to ~/.cache/rustgears/target), or --module PATH.

Exit status: 0 when every workload ran and its results were correct (targets met or not),
1 when a workload failed (error, wrong result, server crash), 2 on bad usage.
"""

import argparse
import array
import ast
import atexit
import collections
import datetime
import importlib.util
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LUA_DIR = os.path.join(HERE, "lua")
DEFAULT_OUT = os.path.join(HERE, "results")
HOST = "127.0.0.1"

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"

# Generous bounds: these stop a hung run, they are never part of a measurement.
START_TIMEOUT = 60.0  # server start (module load with several interpreters)
CMD_TIMEOUT = 600.0  # one client command (a 1M-key job on a slow build)
SUBPROC_TIMEOUT = 600.0  # one redis-benchmark / CPython run

TRIVIAL_SCRIPT = "1"
LUA_TRIVIAL = "return 1"
COUNT_SCRIPT = "GB().count().run()"
COUNTBY_SCRIPT = "GB().countby(lambda r: r['value']).run()"
CPU_SCRIPT = "GB('ShardsIDReader').map(lambda r: sum(i*i for i in range({n}))).run()"
FIB_DEF = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
FIB_N = 25
FIB_SCRIPT = FIB_DEF + "GB('ShardsIDReader').map(lambda r: fib(%d)).run()" % FIB_N
FIB_BASELINE_SCRIPT = FIB_DEF + "GB('ShardsIDReader').map(lambda r: 0).run()"

MODES = {
    # keys: P2/P4 keyspace. runs: repetitions of each heavy measurement (median reported).
    "full": dict(keys=1_000_000, runs=3, p1_requests=50_000, p1_runs=5, p1_clients=50,
                 p3_clients=8, p3_target_s=0.5, p5_runs=3, p6_runs=5, vocabulary=1000, s1_calls=5000,
                 r1_requests=50_000, r1_runs=3, r1_clients=50, r2_events=100_000, r2_runs=3, r4_runs=3,
                 r3_entries=100_000, r3_runs=3, r5_sets=1_000_000,
                 a1_requests=50_000, a1_runs=3, a1_clients=50, a1_parked=1000, a2_records=100_000, a2_runs=3),
    "quick": dict(keys=100_000, runs=1, p1_requests=5_000, p1_runs=1, p1_clients=50,
                  p3_clients=8, p3_target_s=0.2, p5_runs=1, p6_runs=2, vocabulary=1000, s1_calls=1000,
                  r1_requests=5_000, r1_runs=1, r1_clients=50, r2_events=20_000, r2_runs=1, r4_runs=1,
                  r3_entries=20_000, r3_runs=1, r5_sets=100_000,
                  a1_requests=5_000, a1_runs=1, a1_clients=50, a1_parked=1000, a2_records=20_000, a2_runs=1),
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# servers and child processes: every one is killed at exit


_CHILDREN = []  # Popen objects started by this process


def _kill_children():
    for p in list(_CHILDREN):
        try:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
        except Exception:
            pass
        if p in _CHILDREN:
            _CHILDREN.remove(p)


atexit.register(_kill_children)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def module_path(cli_value=None):
    if cli_value:
        return cli_value
    path = os.environ.get("RUSTGEARS_MODULE")
    if path:
        return path
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "rustgears", "target")
    return os.path.join(target, "release", "librustgears.so")


class ServerDied(RuntimeError):
    pass


class Server:
    """One redis-server on 127.0.0.1:<free port>, optionally with the module loaded at start."""

    def __init__(self, workdir, name, module=None, module_args=()):
        import redis

        self.name = name
        self.port = free_port()
        self.dir = os.path.join(workdir, f"{name}-{self.port}")
        os.makedirs(self.dir, exist_ok=True)
        self.logfile = os.path.join(self.dir, "redis.log")
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "",
               "--appendonly", "no", "--dir", self.dir, "--logfile", self.logfile,
               "--enable-debug-command", "yes", "--enable-module-command", "yes",
               # Lua anchors run for seconds: let them finish while other clients wait
               # (instead of getting -BUSY after 5 s), so P4 sees the real blocking time.
               "--busy-reply-threshold", "600000"]
        if module:
            cmd += ["--loadmodule", module, *[str(a) for a in module_args]]
        self.cmd = cmd
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _CHILDREN.append(self.proc)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise ServerDied(f"{name}: redis-server exited with {self.proc.returncode} at start\n"
                                 + self.log_tail())
            try:
                c = redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2)
                if c.ping():
                    c.close()
                    break
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise ServerDied(f"{name}: no PING answer within {START_TIMEOUT}s\n" + self.log_tail())
            time.sleep(0.01)
        self.ready_after = time.perf_counter() - self.started_at

    def client(self, decode=False, timeout=CMD_TIMEOUT):
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=timeout,
                           socket_connect_timeout=10, decode_responses=decode)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self, what=""):
        if not self.alive():
            raise ServerDied(f"{self.name}: redis-server died (exit {self.proc.returncode}) {what}\n"
                             + self.log_tail())

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc in _CHILDREN:
            _CHILDREN.remove(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# helpers


def median(xs):
    return statistics.median(xs) if xs else None


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def pyexecute(client, script):
    """Blocking RG.PYEXECUTE; returns (results, errors). Raises on an error reply."""
    reply = client.execute_command("RG.PYEXECUTE", script)
    if not (isinstance(reply, list) and len(reply) == 2):
        raise AssertionError(f"RG.PYEXECUTE {script!r}: unexpected reply {str(reply)[:300]}")
    results, errors = reply
    if errors:
        raise AssertionError(f"RG.PYEXECUTE {script!r}: execution errors {str(errors)[:500]}")
    return results, errors


def as_str(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def read_lua(name):
    with open(os.path.join(LUA_DIR, name)) as f:
        return f.read()


class ValidationError(AssertionError):
    pass


def expect(cond, msg):
    if not cond:
        raise ValidationError(msg)


# ---------------------------------------------------------------------------------------------
# data


def vocabulary(size, seed=1234):
    import random

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))))
    return sorted(words)


def load_words(server, n_keys, vocab_size):
    """key:0..key:N-1 = a word drawn from a ~1000-word vocabulary. MSET of 10k pairs, pipelined.

    Returns (seconds, expected Counter of words)."""
    import random

    words = vocabulary(vocab_size)
    rng = random.Random(42)
    values = rng.choices(words, k=n_keys)
    expected = collections.Counter(values)
    c = server.client()
    c.flushall()
    t0 = time.perf_counter()
    chunk = 10_000
    pipe = c.pipeline(transaction=False)
    pending = 0
    for start in range(0, n_keys, chunk):
        args = []
        for i in range(start, min(start + chunk, n_keys)):
            args.append(f"key:{i}")
            args.append(values[i])
        pipe.execute_command("MSET", *args)
        pending += 1
        if pending == 10:
            pipe.execute()
            pending = 0
    if pending:
        pipe.execute()
    secs = time.perf_counter() - t0
    dbsize = c.dbsize()
    c.close()
    expect(dbsize == n_keys, f"loaded {dbsize} keys, expected {n_keys}")
    return secs, expected


# ---------------------------------------------------------------------------------------------
# P1 per-call overhead (redis-benchmark)


def redis_benchmark(port, clients, requests, *command):
    cmd = [REDIS_BENCHMARK, "-h", HOST, "-p", str(port), "-c", str(clients), "-n", str(requests),
           "--csv", *command]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROC_TIMEOUT)
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({out.returncode}): {out.stderr[-500:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    rows = [ln for ln in lines if not ln.startswith('"test"')]
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    fields = [f.strip('"') for f in rows[-1].split('","')]
    header = [f.strip('"') for f in lines[0].split('","')] if lines[0].startswith('"test"') else None
    rec = {"rps": float(fields[1])}
    if header:
        for k, v in zip(header[2:], fields[2:]):
            try:
                rec[k] = float(v.strip('"'))
            except ValueError:
                pass
    return rec


def commandstats(client, name):
    info = client.info("commandstats")
    return info.get(f"cmdstat_{name}", {})


def p1(server, cfg, raw):
    c = server.client()
    # correctness first: redis-benchmark counts error replies as requests
    got = c.execute_command("RG.PYEXECUTE", TRIVIAL_SCRIPT)
    expect(got in (b"OK", "OK"), f"RG.PYEXECUTE {TRIVIAL_SCRIPT!r}: expected OK, got {got!r}")
    got = c.execute_command("EVAL", LUA_TRIVIAL, 0)
    expect(got == 1, f"EVAL {LUA_TRIVIAL!r} 0: expected 1, got {got!r}")
    clients, n = cfg["p1_clients"], cfg["p1_requests"]
    rg_cmd = ("RG.PYEXECUTE", TRIVIAL_SCRIPT)
    lua_cmd = ("EVAL", LUA_TRIVIAL, "0")
    warm = max(1000, n // 10)
    redis_benchmark(server.port, clients, warm, *rg_cmd)
    redis_benchmark(server.port, clients, warm, *lua_cmd)
    before = commandstats(c, "rg.pyexecute")
    rg_runs, lua_runs = [], []
    for i in range(cfg["p1_runs"]):  # interleaved: both see the same machine noise
        rg_runs.append(redis_benchmark(server.port, clients, n, *rg_cmd))
        lua_runs.append(redis_benchmark(server.port, clients, n, *lua_cmd))
        log(f"P1 run {i + 1}: RG.PYEXECUTE {rg_runs[-1]['rps']:.0f} rps, EVAL {lua_runs[-1]['rps']:.0f} rps")
    after = commandstats(c, "rg.pyexecute")
    failed = after.get("failed_calls", 0) - before.get("failed_calls", 0)
    calls = after.get("calls", 0) - before.get("calls", 0)
    expect(failed == 0, f"RG.PYEXECUTE {TRIVIAL_SCRIPT!r} under redis-benchmark: {failed} failed calls")
    expect(calls >= n * cfg["p1_runs"], f"RG.PYEXECUTE calls {calls} < {n * cfg['p1_runs']} requested")
    server.check_alive("after P1")
    c.close()
    raw["p1"] = {"clients": clients, "requests": n, "rustgears": rg_runs, "lua": lua_runs,
                 "rustgears_rps_median": median([r["rps"] for r in rg_runs]),
                 "lua_rps_median": median([r["rps"] for r in lua_runs]),
                 "commandstats_calls": calls, "commandstats_failed": failed}


# ---------------------------------------------------------------------------------------------
# P2 scan throughput


def rg_count(c, n_keys):
    results, _ = pyexecute(c, COUNT_SCRIPT)
    expect(len(results) == 1 and int(results[0]) == n_keys,
           f"{COUNT_SCRIPT}: expected [{n_keys}], got {str(results)[:200]}")


def rg_countby(c, expected):
    results, _ = pyexecute(c, COUNTBY_SCRIPT)
    got = {}
    for rec in results:
        d = ast.literal_eval(as_str(rec))
        got[d["key"]] = d["value"]
    if got != dict(expected):
        missing = set(expected) - set(got)
        extra = set(got) - set(expected)
        wrong = [k for k in set(got) & set(expected) if got[k] != expected[k]][:5]
        raise ValidationError(
            f"{COUNTBY_SCRIPT}: {len(got)} words (expected {len(expected)}), sum {sum(got.values())} "
            f"(expected {sum(expected.values())}); missing {sorted(missing)[:5]}, extra "
            f"{sorted(extra)[:5]}, wrong counts {[(k, got[k], expected[k]) for k in wrong]}")


def client_wordcount(server, expected):
    """The same word count done by a client: SCAN COUNT 1000 + MGET per page + Counter."""
    c = server.client()
    counts = collections.Counter()
    cursor = 0
    pages = 0
    t0 = time.perf_counter()
    while True:
        cursor, keys = c.scan(cursor=cursor, count=1000)
        if keys:
            counts.update(c.mget(keys))
        pages += 1
        if cursor == 0:
            break
        if pages > 10_000_000:
            raise RuntimeError("SCAN did not terminate")
    secs = time.perf_counter() - t0
    c.close()
    got = {k.decode(): v for k, v in counts.items()}
    # SCAN may return a key twice in theory (rehashing); the keyspace is static here.
    expect(len(got) == len(expected) and sum(got.values()) >= sum(expected.values()),
           f"client word count: {len(got)} words / {sum(got.values())} keys, expected "
           f"{len(expected)} / {sum(expected.values())}")
    return secs


def lua_wordcount(c, expected):
    got = c.execute_command("EVAL", read_lua("wordcount.lua"), 0)
    distinct, seen = int(got[0]), int(got[1])
    expect(distinct == len(expected) and seen >= sum(expected.values()),
           f"Lua word count: {distinct} words / {seen} keys, expected {len(expected)} / "
           f"{sum(expected.values())}")


def p2(server, cfg, raw, expected):
    n = cfg["keys"]
    c = server.client()
    # warm-up (compiles and caches the scripts; loads the Lua script)
    warm = timed(rg_count, c, n)[0]
    lua_wordcount(c, expected)
    # Time budget: P2 and P4 together run about 5 module jobs over the keyspace per run. On a
    # build so slow that this alone would exceed ~5 minutes, take fewer runs (recorded).
    cfg["scan_runs"] = cfg["runs"]
    if cfg["runs"] > 1 and cfg["runs"] * 5 * warm > 300:
        cfg["scan_runs"] = max(1, int(300 / (5 * warm)))
        log(f"P2/P4: one count takes {warm:.1f}s: reducing to {cfg['scan_runs']} run(s) to stay in budget")
    runs = {"count_s": [], "countby_s": [], "client_s": [], "lua_s": []}
    for i in range(cfg["scan_runs"]):
        runs["count_s"].append(timed(rg_count, c, n)[0])
        runs["countby_s"].append(timed(rg_countby, c, expected)[0])
        runs["client_s"].append(client_wordcount(server, expected))
        runs["lua_s"].append(timed(lua_wordcount, c, expected)[0])
        server.check_alive("during P2")
        log("P2 run %d: count %.2fs, countby %.2fs, client %.2fs, lua %.2fs" % (
            i + 1, runs["count_s"][-1], runs["countby_s"][-1], runs["client_s"][-1], runs["lua_s"][-1]))
    c.close()
    med = {k: median(v) for k, v in runs.items()}
    raw["p2"] = {"keys": n, "distinct_words": len(expected), "runs_seconds": runs,
                 "median_seconds": med,
                 "records_per_s": {k[:-2]: n / v for k, v in med.items()}}


# ---------------------------------------------------------------------------------------------
# P4 latency impact: a separate process PINGs in a tight loop while a job runs


def pinger_main(port):
    """Child process: PING over a raw socket until a line 't0 t1' arrives on stdin; then print
    JSON stats of the PINGs in flight at any time within [t0, t1], i.e. sent before t1 and
    answered after t0 (a PING sent just before a blocking job starts waits for all of it).
    perf_counter is CLOCK_MONOTONIC on Linux: comparable between processes."""
    s = socket.create_connection((HOST, port), timeout=CMD_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ping = b"*1\r\n$4\r\nPING\r\n"
    sent = array.array("d")
    lat = array.array("d")
    errors = 0

    def one():
        nonlocal errors
        t = time.perf_counter()
        s.sendall(ping)
        buf = b""
        while not buf.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        d = time.perf_counter() - t
        if buf != b"+PONG\r\n":
            errors += 1
        sent.append(t)
        lat.append(d)

    for _ in range(100):
        one()
    del sent[:], lat[:]
    print("ready", flush=True)
    stdin = sys.stdin
    limit = 50_000_000
    window = None
    i = 0
    while i < limit:
        one()
        i += 1
        if i % 32 == 0 and select.select([stdin], [], [], 0)[0]:
            window = [float(x) for x in stdin.readline().split()]
            break
    s.close()
    t0, t1 = window if window and len(window) == 2 else (float("-inf"), float("inf"))
    w = sorted(d for t, d in zip(sent, lat) if t <= t1 and t + d >= t0)
    allsorted = sorted(lat)

    def stats(xs):
        if not xs:
            return {"count": 0}
        return {"count": len(xs), "max_ms": xs[-1] * 1e3, "p99_ms": xs[int(0.99 * (len(xs) - 1))] * 1e3,
                "p50_ms": xs[len(xs) // 2] * 1e3, "mean_ms": sum(xs) / len(xs) * 1e3}

    print(json.dumps({"window": stats(w), "all": stats(allsorted), "errors": errors}), flush=True)


def with_pinger(server, job, settle=0.2):
    """Runs job() while a pinger process PINGs the server; returns (job seconds, ping stats)."""
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_pinger", str(server.port)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _CHILDREN.append(p)
    try:
        ready = p.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"pinger did not start: {ready!r}")
        time.sleep(settle)
        t0 = time.perf_counter()
        job()
        t1 = time.perf_counter()
        time.sleep(settle)
        p.stdin.write(f"{t0!r} {t1!r}\n")
        p.stdin.flush()
        out, _ = p.communicate(timeout=CMD_TIMEOUT)
        if p.returncode != 0:
            raise RuntimeError(f"pinger exited with {p.returncode}")
        return t1 - t0, json.loads(out.strip().splitlines()[-1])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
        if p in _CHILDREN:
            _CHILDREN.remove(p)


def p4(server, cfg, raw, expected):
    c = server.client()
    idle_s, idle = with_pinger(server, lambda: time.sleep(1.0))
    rg, lua = [], []
    for i in range(cfg.get("scan_runs", cfg["runs"])):
        secs, st = with_pinger(server, lambda: rg_countby(c, expected))
        rg.append({"job_s": secs, **st})
        secs, st = with_pinger(server, lambda: lua_wordcount(c, expected))
        lua.append({"job_s": secs, **st})
        server.check_alive("during P4")
        log("P4 run %d: PING max/p99 during countby %.2f/%.2f ms (%d pings), during Lua %.1f/%.1f ms (%d pings)"
            % (i + 1, rg[-1]["window"].get("max_ms", float("nan")), rg[-1]["window"].get("p99_ms", float("nan")),
               rg[-1]["window"]["count"], lua[-1]["window"].get("max_ms", float("nan")),
               lua[-1]["window"].get("p99_ms", float("nan")), lua[-1]["window"]["count"]))
    c.close()
    for name, runs in (("countby", rg), ("lua", lua)):
        expect(all(r["window"]["count"] > 0 for r in runs), f"P4 {name}: no PING completed in the window")
    raw["p4"] = {
        "idle": idle, "countby": rg, "lua": lua,
        "countby_max_ms_median": median([r["window"]["max_ms"] for r in rg]),
        "countby_p99_ms_median": median([r["window"]["p99_ms"] for r in rg]),
        "countby_max_ms_worst": max(r["window"]["max_ms"] for r in rg),
        "lua_max_ms_median": median([r["window"]["max_ms"] for r in lua]),
        "lua_p99_ms_median": median([r["window"]["p99_ms"] for r in lua]),
    }


# ---------------------------------------------------------------------------------------------
# P3 parallelism


def thread_sched(pid):
    """{tid: (name, cpu seconds, seconds spent runnable but waiting for a CPU)} of a process,
    from /proc/<pid>/task/<tid>/schedstat. Tells a worker that waits for a lock (neither running
    nor runnable) from one that waits for a CPU the rest of the machine is using."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, wait_ns, _ = f.read().split()
            out[tid] = (name, int(run_ns) / 1e9, int(wait_ns) / 1e9)
        except (OSError, ValueError):
            pass
    return out


def sched_delta(before, after, prefix="rg-worker"):
    cpu = wait = 0.0
    seen = 0
    for tid, (name, run_s, wait_s) in after.items():
        if not name.startswith(prefix):
            continue
        _, run0, wait0 = before.get(tid, (name, 0.0, 0.0))
        cpu += run_s - run0
        wait += wait_s - wait0
        seen += 1
    if not seen:  # no schedstat, or workers named differently
        return None
    return {"workers_cpu_s": cpu, "workers_runqueue_wait_s": wait}


def concurrent_run(server, clients_n, script, expected, diag=None):
    import redis

    conns = [server.client() for _ in range(clients_n)]
    for c in conns:
        c.ping()
    barrier = threading.Barrier(clients_n + 1)
    ends = [None] * clients_n
    errs = []

    def worker(i):
        try:
            barrier.wait(timeout=60)
            results, _ = pyexecute(conns[i], script)
            if [as_str(x) for x in results] != [str(expected)]:
                errs.append(f"client {i}: expected [{expected}], got {str(results)[:200]}")
            ends[i] = time.perf_counter()
        except (redis.RedisError, AssertionError, threading.BrokenBarrierError) as e:
            errs.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients_n)]
    for t in threads:
        t.start()
    sched0 = thread_sched(server.pid)
    barrier.wait(timeout=60)
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=CMD_TIMEOUT)
    if diag is not None:
        d = sched_delta(sched0, thread_sched(server.pid))
        if d:
            diag.append(d)
    for c in conns:
        c.close()
    if errs or any(t.is_alive() for t in threads):
        raise ValidationError(f"P3 {script!r}: " + "; ".join(errs or ["a client did not finish"]))
    return max(ends) - t0


def p3(workdir, module, cfg, raw):
    with Server(workdir, "p3-et1", module, ["ExecutionThreads", 1]) as s1, \
            Server(workdir, "p3-et2", module, ["ExecutionThreads", 2]) as s2:
        c = s1.client()
        probe_n = 300_000
        pyexecute(c, CPU_SCRIPT.format(n=1000))
        t = min(timed(pyexecute, c, CPU_SCRIPT.format(n=probe_n))[0] for _ in range(3))
        n = int(min(50_000_000, max(50_000, probe_n * cfg["p3_target_s"] / max(t, 1e-3))))
        n = int(round(n, -4))
        script = CPU_SCRIPT.format(n=n)
        single = [timed(pyexecute, c, script)[0] for _ in range(2)]
        c.close()
        expected = sum(i * i for i in range(n))
        k = cfg["p3_clients"]
        for s in (s1, s2):  # warm-up: every worker compiles the script
            concurrent_run(s, k, script, expected)
        walls = {"et1": [], "et2": []}
        sched = {"et1": [], "et2": []}
        for i in range(cfg["runs"]):
            walls["et1"].append(concurrent_run(s1, k, script, expected, sched["et1"]))
            walls["et2"].append(concurrent_run(s2, k, script, expected, sched["et2"]))
            log(f"P3 run {i + 1}: {k} jobs on ExecutionThreads 1: {walls['et1'][-1]:.2f}s, "
                f"on ExecutionThreads 2: {walls['et2'][-1]:.2f}s" + (
                    " (workers' CPU %.2fs, waiting for a CPU %.2fs)" % (
                        sched["et2"][-1]["workers_cpu_s"], sched["et2"][-1]["workers_runqueue_wait_s"])
                    if len(sched["et2"]) == i + 1 else ""))
        s1.check_alive("after P3")
        s2.check_alive("after P3")
    med = {key: median(v) for key, v in walls.items()}
    raw["p3"] = {"clients": k, "loop_n": n, "script": script, "probe_seconds": t,
                 "single_job_seconds_et1": single, "wall_seconds": walls, "median_wall_seconds": med,
                 "worker_sched": sched,
                 "et2_worker_cores_used_median": median([d["workers_cpu_s"] / w for d, w in
                                                          zip(sched["et2"], walls["et2"])])
                 if len(sched["et2"]) == len(walls["et2"]) else None,
                 "et2_worker_runqueue_wait_median_s": median([d["workers_runqueue_wait_s"] for d in sched["et2"]]),
                 "jobs_per_s": {key: k / v for key, v in med.items()}}


# ---------------------------------------------------------------------------------------------
# S1 calls on behalf of the main thread: the round trip of a no-op call (RG.TESTSYNC, the test
# hook that runs a script on its home worker while the main thread waits with the lock held)


def server_durations(c, n, *command):
    """Runs `command` n times; returns each call's duration on the server (SLOWLOG, in us), so
    the client's round trip is not counted."""
    c.config_set("slowlog-max-len", n)
    c.config_set("slowlog-log-slower-than", 0)
    c.execute_command("SLOWLOG", "RESET")
    for _ in range(n):
        c.execute_command(*command)
    entries = c.execute_command("SLOWLOG", "GET", n)
    c.config_set("slowlog-log-slower-than", 10000)
    name = command[0].lower()
    return [e[2] for e in entries if as_str(e[3][0]).lower() == name]


def s1(workdir, module, cfg, raw):
    n = cfg["s1_calls"]
    with Server(workdir, "sync", module, ("TestHooks", "1")) as srv:
        c = srv.client()
        for script in ("", "pass"):
            got = c.execute_command("RG.TESTSYNC", script)
            expect(got in (b"OK", "OK"), f"RG.TESTSYNC {script!r}: expected OK, got {got!r}")
        server_durations(c, n // 10, "RG.TESTSYNC", "")  # warm-up
        # The round trip alone (an empty call runs no Python), then a no-op script body on
        # behalf of the main thread, and the same body as an ordinary RG.PYEXECUTE.
        sync = server_durations(c, n, "RG.TESTSYNC", "")
        sync_body = server_durations(c, n, "RG.TESTSYNC", "pass")
        body = server_durations(c, n, "RG.PYEXECUTE", "pass")
        srv.check_alive("after S1")
        c.close()
    expect(len(sync) >= n // 2, f"S1: only {len(sync)} SLOWLOG entries for {n} calls")
    raw["s1"] = {"calls": n, "sync_us_median": median(sync), "sync_us_p99": sorted(sync)[int(len(sync) * 0.99) - 1],
                 "sync_body_us_median": median(sync_body), "pyexecute_us_median": median(body)}
    log(f"S1: no-op call on behalf of the main thread: median {raw['s1']['sync_us_median']:.1f} us, "
        f"p99 {raw['s1']['sync_us_p99']:.1f} us; a 'pass' body: {raw['s1']['sync_body_us_median']:.1f} us on behalf "
        f"of the main thread, {raw['s1']['pyexecute_us_median']:.1f} us as RG.PYEXECUTE")


# ---------------------------------------------------------------------------------------------
# P5 footprint


def p5(workdir, module, cfg, raw):
    loads = []
    for i in range(cfg["p5_runs"]):
        with Server(workdir, f"p5-load{i}") as s:
            c = s.client()
            c.ping()
            rss0 = s.rss_kb()
            secs, reply = timed(c.execute_command, "MODULE", "LOAD", module, "ExecutionThreads", "3")
            expect(reply in (b"OK", "OK", True), f"MODULE LOAD: expected OK, got {reply!r}")
            first, got = timed(c.execute_command, "RG.PYEXECUTE", TRIVIAL_SCRIPT)
            expect(got in (b"OK", "OK"), f"first RG.PYEXECUTE after MODULE LOAD: got {got!r}")
            # PING round trip on the same connection: the floor of both figures above
            rtt, _ = timed(c.ping)
            loads.append({"module_load_s": secs, "first_exec_s": first, "ping_s": rtt,
                          "rss_before_kb": rss0, "rss_after_kb": s.rss_kb()})
            c.close()
            s.check_alive("after MODULE LOAD")
    rss = []
    for i in range(cfg["p5_runs"]):
        rec = {}
        with Server(workdir, f"p5-none{i}") as s:
            c = s.client()
            c.ping()
            rec["none_kb"] = s.rss_kb()
            c.close()
        for threads in (1, 5):
            with Server(workdir, f"p5-et{threads}-{i}", module, ["ExecutionThreads", threads]) as s:
                c = s.client()
                got = c.execute_command("RG.PYEXECUTE", TRIVIAL_SCRIPT)
                expect(got in (b"OK", "OK"), f"RG.PYEXECUTE {TRIVIAL_SCRIPT!r}: got {got!r}")
                time.sleep(0.2)
                rec[f"et{threads}_kb"] = s.rss_kb()
                rec[f"et{threads}_ready_s"] = s.ready_after
                c.close()
        rec["per_vm_mb"] = (rec["et5_kb"] - rec["et1_kb"]) / 4 / 1024
        rss.append(rec)
        log(f"P5 run {i + 1}: RSS no module {rec['none_kb'] / 1024:.1f} MB, ET1 {rec['et1_kb'] / 1024:.1f} MB, "
            f"ET5 {rec['et5_kb'] / 1024:.1f} MB -> {rec['per_vm_mb']:.2f} MB per VM")
    raw["p5"] = {"module_load": loads, "rss": rss,
                 "module_load_ms_median": median([x["module_load_s"] for x in loads]) * 1e3,
                 "first_exec_ms_median": median([x["first_exec_s"] for x in loads]) * 1e3,
                 "per_vm_mb_median": median([x["per_vm_mb"] for x in rss]),
                 "rss_et1_mb_median": median([x["et1_kb"] for x in rss]) / 1024,
                 "rss_et5_mb_median": median([x["et5_kb"] for x in rss]) / 1024,
                 "rss_none_mb_median": median([x["none_kb"] for x in rss]) / 1024}


# ---------------------------------------------------------------------------------------------
# P6 interpreter: RustPython inside the module vs CPython


CPYTHON_FIB = FIB_DEF + r"""
import json, sys, time
runs = int(sys.argv[1])
fib(%d)
ts = []
for _ in range(runs):
    t = time.perf_counter()
    v = fib(%d)
    ts.append(time.perf_counter() - t)
print(json.dumps({"seconds": ts, "value": v, "version": sys.version.split()[0],
                  "implementation": sys.implementation.name}))
""" % (FIB_N, FIB_N)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def p6(server, cfg, raw):
    c = server.client()
    want = fib(FIB_N)
    results, _ = pyexecute(c, FIB_SCRIPT)
    expect([as_str(x) for x in results] == [str(want)], f"fib({FIB_N}) in RustPython: expected {want}, got {results}")
    pyexecute(c, FIB_BASELINE_SCRIPT)
    fib_s, base_s = [], []
    for _ in range(cfg["p6_runs"]):
        base_s.append(timed(pyexecute, c, FIB_BASELINE_SCRIPT)[0])
        fib_s.append(timed(pyexecute, c, FIB_SCRIPT)[0])
    c.close()
    py = shutil.which("python3") or sys.executable
    out = subprocess.run([py, "-c", CPYTHON_FIB, str(max(5, cfg["p6_runs"]))], capture_output=True,
                         text=True, timeout=SUBPROC_TIMEOUT)
    if out.returncode != 0:
        raise RuntimeError(f"CPython fib failed: {out.stderr[-500:]}")
    cp = json.loads(out.stdout)
    expect(cp["value"] == want, f"CPython fib({FIB_N}) = {cp['value']}")
    rust = max(median(fib_s) - median(base_s), 1e-9)
    raw["p6"] = {"fib_n": FIB_N, "rustpython_fib_run_s": fib_s, "rustpython_baseline_run_s": base_s,
                 "rustpython_fib_s": rust, "cpython_fib_s_runs": cp["seconds"],
                 "cpython_fib_s": median(cp["seconds"]),
                 "cpython": f"CPython {cp['version']}", "cpython_path": py,
                 "cpython_implementation": cp["implementation"]}
    log(f"P6: fib({FIB_N}) RustPython {rust * 1e3:.1f} ms, CPython {raw['p6']['cpython_fib_s'] * 1e3:.1f} ms")


# ---------------------------------------------------------------------------------------------
# R1-R5 registrations: work triggered by events (keyspace events, XADD) against the same work
# done without the module (a Lua wrapper, a client subscribed to keyspace notifications, a
# client-side stream consumer), each anchor on a plain redis-server.

R1_SCRIPT = ("GB().foreach(lambda x: execute('XADD', 'audit', '*', 'k', x['key']))"
             ".register(prefix='key:*', mode='sync', eventTypes=['set'], readValue=False)")
R1_LUA = "redis.call('SET', KEYS[1], ARGV[1]) redis.call('XADD', 'audit', '*', 'k', KEYS[1])"
R2_SCRIPT = ("GB().foreach(lambda x: execute('HSET', 'mirror', x['key'], x['value']))"
             ".register(prefix='wb:*', eventTypes=['set'])")
R3_SCRIPT = ("GB('StreamReader').foreach(lambda x: execute('INCRBY', 'counter', 1))"
             ".register(prefix='s', batch=100, duration=100)")
# The flood: a slow registration (some Python per event) that counts every event, and records
# one in a thousand keys by name so that exactly-once can be checked key by key.
R5_SCRIPT = """
def work(x):
    k = x['key']
    h = 0
    for ch in k * 8:
        h = (h * 31 + ord(ch)) & 0xffffffff
    execute('INCR', 'processed')
    if int(k[2:]) % 1000 == 0:
        execute('HINCRBY', 'sample', k, 1)
    return h
GB().map(work).register(prefix='f:*', eventTypes=['set'], readValue=False)
"""
R5_MEMORY_BOUND_MB = 200  # over the baseline taken just before the flood
R_WRITERS = 4  # writer processes for R2/R3/R5
R_PIPELINE = 100  # commands per round trip of one writer
R_POLL_S = 0.005  # how often the harness looks whether the work is done
R_STALL_S = 5.0  # no progress for this long after the writers finished: the rest is lost


def register(c, script):
    got = c.execute_command("RG.PYEXECUTE", script)
    expect(got in (b"OK", "OK"), f"RG.PYEXECUTE of a registration: expected OK, got {str(got)[:300]}")


def plain(v):
    """A reply with bytes decoded (for the JSON of the results)."""
    if isinstance(v, list):
        return [plain(x) for x in v]
    return as_str(v) if isinstance(v, bytes) else v


def registrations(c):
    """RG.DUMPREGISTRATIONS as a list of flat dicts: id, reader, and the RegistrationData values
    (numTriggered, numSuccess, numFailures, numAborted, lastError, ...)."""
    out = []
    for entry in c.execute_command("RG.DUMPREGISTRATIONS"):
        d = dict(zip([as_str(k) for k in entry[0::2]], entry[1::2]))
        data = d.get("RegistrationData") or []
        rec = {"id": as_str(d.get("id")), "reader": as_str(d.get("reader"))}
        for k, v in zip(data[0::2], data[1::2]):
            v = plain(v)
            try:
                v = int(v)
            except (TypeError, ValueError):
                pass
            rec[as_str(k)] = v
        out.append(rec)
    return out


def check_registration(c, what, triggered=None):
    """The only registration of the server must have no failed/aborted execution (and, if given,
    have started `triggered` executions). Returns its statistics."""
    regs = registrations(c)
    expect(len(regs) == 1, f"{what}: expected 1 registration, RG.DUMPREGISTRATIONS has {len(regs)}")
    r = regs[0]
    expect(not r.get("numFailures") and not r.get("numAborted"),
           f"{what}: {r.get('numFailures')} failed and {r.get('numAborted')} aborted executions, "
           f"lastError {r.get('lastError')!r}")
    if triggered is not None and isinstance(r.get("numTriggered"), int):
        expect(r["numTriggered"] == triggered,
               f"{what}: numTriggered {r['numTriggered']}, expected {triggered}")
    return r


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


def writer_main(spec):
    """Child process: sends one range of SET or XADD commands over a raw socket, `pipeline` per
    round trip, once 'go' arrives on stdin; prints JSON {t0, t1, sent, errors, first_error}."""
    spec = json.loads(spec)
    s = socket.create_connection((HOST, spec["port"]), timeout=CMD_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a, b, pipe, kind = spec["start"], spec["end"], spec["pipeline"], spec["kind"]
    prefix, value = spec["prefix"], spec["value"]
    if kind == "set":
        def make(i):
            return resp("SET", f"{prefix}{i}", value.format(i=i))
    elif kind == "xadd":
        def make(i):
            return resp("XADD", prefix, "*", "i", i)
    else:
        raise SystemExit(f"unknown writer kind {kind}")
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


class Child:
    """A helper process of this script (writer, subscriber, consumer) that prints 'ready', waits
    for one line on stdin, and prints one JSON line at the end."""

    def __init__(self, *args):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        _CHILDREN.append(self.p)

    def wait_ready(self):
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"helper process did not start: {line!r}")

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def result(self, timeout=CMD_TIMEOUT):
        out, _ = self.p.communicate(timeout=timeout)
        if self.p.returncode != 0:
            raise RuntimeError(f"helper process exited with {self.p.returncode}")
        return json.loads(out.strip().splitlines()[-1])

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)
        if self.p in _CHILDREN:
            _CHILDREN.remove(self.p)


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


def r1(workdir, module, cfg, raw):
    n, clients = cfg["r1_requests"], cfg["r1_clients"]
    with Server(workdir, "r1-reg", module) as reg, Server(workdir, "r1-lua") as lua:
        cr, cl = reg.client(), lua.client()
        register(cr, R1_SCRIPT)
        rg_cmd = ("SET", "key:__rand_int__", "v")
        lua_cmd = ("EVAL", R1_LUA, "1", "key:__rand_int__", "v")
        # correctness first: redis-benchmark counts error replies as requests
        expect(cr.set("key:probe", "v") and cr.xlen("audit") == 1,
               f"SET with the sync registration: XLEN audit is {cr.xlen('audit')}, expected 1")
        cl.execute_command(*lua_cmd[:3], "key:probe", "v")
        expect(cl.xlen("audit") == 1, f"Lua wrapper: XLEN audit is {cl.xlen('audit')}, expected 1")
        warm = max(1000, n // 10)
        sets = 1 + warm
        redis_benchmark(reg.port, clients, warm, "-r", "100000", *rg_cmd)
        redis_benchmark(lua.port, clients, warm, "-r", "100000", *lua_cmd)
        rg_runs, lua_runs = [], []
        for i in range(cfg["r1_runs"]):  # interleaved
            rg_runs.append(redis_benchmark(reg.port, clients, n, "-r", "100000", *rg_cmd))
            lua_runs.append(redis_benchmark(lua.port, clients, n, "-r", "100000", *lua_cmd))
            sets += n
            log(f"R1 run {i + 1}: SET + sync registration {rg_runs[-1]['rps']:.0f} ops/s, "
                f"Lua wrapper {lua_runs[-1]['rps']:.0f} ops/s")
        xlen_rg, xlen_lua = cr.xlen("audit"), cl.xlen("audit")
        failed_set = commandstats(cr, "set").get("failed_calls", 0)
        failed_eval = commandstats(cl, "eval").get("failed_calls", 0)
        reg.check_alive("after R1")
        stats = check_registration(cr, "R1", triggered=sets)
        cr.close()
        cl.close()
    expect(failed_set == 0 and failed_eval == 0, f"R1: {failed_set} failed SETs, {failed_eval} failed EVALs")
    expect(xlen_rg == sets, f"R1: XLEN audit is {xlen_rg} after {sets} SETs (one XADD per SET expected)")
    expect(xlen_lua == sets, f"R1 Lua: XLEN audit is {xlen_lua} after {sets} calls")
    raw["r1"] = {"clients": clients, "requests": n, "script": R1_SCRIPT, "lua": R1_LUA,
                 "rustgears": rg_runs, "lua_runs": lua_runs, "sets": sets, "xlen_audit": xlen_rg,
                 "registration": stats,
                 "rustgears_ops_median": median([r["rps"] for r in rg_runs]),
                 "lua_ops_median": median([r["rps"] for r in lua_runs])}


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
    prefix = b"__keyspace@0__:"

    def subscribe():
        p = sub.pubsub()
        p.psubscribe(prefix.decode() + "wb:*")
        while True:
            m = p.get_message(timeout=CMD_TIMEOUT)
            if m and m["type"] == "psubscribe":
                return p

    p = subscribe()
    print("ready", flush=True)
    processed = disconnects = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        keys = []
        try:
            m = p.get_message(timeout=0.05)
            while m is not None and len(keys) < batch:
                if m["type"] == "pmessage" and m["data"] == b"set":
                    keys.append(m["channel"][len(prefix):])
                m = p.get_message(timeout=0) if len(keys) < batch else None
        except (redis.ConnectionError, redis.TimeoutError):
            disconnects += 1
            p = subscribe()
        if not keys:
            continue
        if batch == 1:
            data.hset("mirror", keys[0], data.get(keys[0]))
            processed += 1
            continue
        pipe = data.pipeline(transaction=False)
        for k in keys:
            pipe.get(k)
        values = pipe.execute()
        pipe = data.pipeline(transaction=False)
        for k, v in zip(keys, values):
            pipe.hset("mirror", k, v)
        pipe.execute()
        processed += len(keys)
    print(json.dumps({"processed": processed, "disconnects": disconnects}), flush=True)


def pinged(srv, job, out):
    """Runs job() under the pinger of P4; puts the ping statistics in out['ping']."""
    if out is None:
        return job()
    got = []
    secs, st = with_pinger(srv, lambda: got.append(job()))
    out["ping"] = {"job_s": secs, **st}
    return got[0]


def r2_ours(srv, n, run, ping=None):
    """One R2 run of the registration; with ping={} the run happens under the pinger (R4), its
    window starting once the writers are ready."""
    c = srv.client()
    c.delete("mirror")
    w = Writers(srv.port, "set", n, R_WRITERS, "wb:", f"r{run}v{{i}}")
    res = pinged(srv, lambda: watch(lambda: c.hlen("mirror"), n, w), ping)
    got = c.hgetall("mirror")
    c.close()
    wrong = sum(1 for i in range(n) if got.get(f"wb:{i}".encode()) != f"r{run}v{i}".encode())
    lost = n - res["value"]
    secs = res["t_done"] - res["writers"]["t_first"]
    return {"events": n, "seconds": secs, "events_per_s": res["value"] / secs, "lost": lost, "wrong": wrong,
            "writers_seconds": res["writers"]["t_last"] - res["writers"]["t_first"]}


def r2_subscriber(srv, n, run, style="per-event", ping=None):
    c = srv.client()
    c.delete("mirror")
    sub = Child("--_subscriber", f"{srv.port}:{style}")
    try:
        sub.wait_ready()
        w = Writers(srv.port, "set", n, R_WRITERS, "wb:", f"r{run}v{{i}}")
        res = pinged(srv, lambda: watch(lambda: c.hlen("mirror"), n, w), ping)
        sub.send("stop")
        st = sub.result()
    finally:
        sub.close()
    got = c.hgetall("mirror")
    c.close()
    wrong = sum(1 for i in range(n) if f"wb:{i}".encode() in got and got[f"wb:{i}".encode()] != f"r{run}v{i}".encode())
    secs = res["t_done"] - res["writers"]["t_first"]
    return {"events": n, "seconds": secs, "events_per_s": res["value"] / secs, "lost": n - res["value"],
            "wrong": wrong, "disconnects": st["disconnects"], "processed": st["processed"],
            "writers_seconds": res["writers"]["t_last"] - res["writers"]["t_first"]}


def r2_servers(workdir, module, tag):
    ours = Server(workdir, f"{tag}-reg", module)
    try:
        anchor = Server(workdir, f"{tag}-sub")
    except Exception:
        ours.stop()
        raise
    c = ours.client()
    register(c, R2_SCRIPT)
    c.close()
    c = anchor.client()
    c.config_set("notify-keyspace-events", "K$")
    c.close()
    return ours, anchor


def r2(workdir, module, cfg, raw):
    n = cfg["r2_events"]
    ours, anchor = r2_servers(workdir, module, "r2")
    with ours, anchor:
        r2_ours(ours, 1000, 0)  # warm-up
        r2_subscriber(anchor, 1000, 0)
        r2_subscriber(anchor, 1000, 0, "batched")
        rg, sub, bat = [], [], []
        for i in range(cfg["r2_runs"]):
            rg.append(r2_ours(ours, n, i + 1))
            sub.append(r2_subscriber(anchor, n, i + 1))
            bat.append(r2_subscriber(anchor, n, i + 1, "batched"))
            log(f"R2 run {i + 1}: async registration {rg[-1]['events_per_s']:.0f} events/s "
                f"({rg[-1]['lost']} lost), subscriber {sub[-1]['events_per_s']:.0f} events/s "
                f"({sub[-1]['lost']} lost, {sub[-1]['disconnects']} disconnects), batched subscriber "
                f"{bat[-1]['events_per_s']:.0f} events/s ({bat[-1]['lost']} lost, {bat[-1]['disconnects']} disconnects)")
        ours.check_alive("after R2")
        c = ours.client()
        stats = check_registration(c, "R2", triggered=1000 + n * cfg["r2_runs"])
        c.close()
    raw["r2"] = {"events": n, "script": R2_SCRIPT, "rustgears": rg, "subscriber": sub, "batched": bat,
                 "registration": stats,
                 "rustgears_events_per_s_median": median([r["events_per_s"] for r in rg]),
                 "subscriber_events_per_s_median": median([r["events_per_s"] for r in sub]),
                 "batched_events_per_s_median": median([r["events_per_s"] for r in bat]),
                 "batched_lost_total": sum(r["lost"] for r in bat),
                 "rustgears_lost_total": sum(r["lost"] for r in rg),
                 "subscriber_lost_total": sum(r["lost"] for r in sub),
                 "subscriber_disconnects_total": sum(r["disconnects"] for r in sub)}
    for r in rg:
        expect(r["lost"] == 0 and r["wrong"] == 0,
               f"R2: the registration lost {r['lost']} of {n} events ({r['wrong']} wrong values)")


def r4(workdir, module, cfg, raw):
    n = cfg["r2_events"]
    ours, anchor = r2_servers(workdir, module, "r4")
    with ours, anchor:
        r2_ours(ours, 1000, 0)
        idle_s, idle = with_pinger(ours, lambda: time.sleep(1.0))
        rg, sub = [], []
        for i in range(cfg["r4_runs"]):
            ping = {}
            out = r2_ours(ours, n, i + 1, ping=ping)
            rg.append({"r2": out, **ping["ping"]})
            ping = {}
            out = r2_subscriber(anchor, n, i + 1, ping=ping)
            sub.append({"r2": out, **ping["ping"]})
            log("R4 run %d: PING p99/max during the registration's R2 %.2f/%.2f ms (%d pings), "
                "during the subscriber's %.2f/%.2f ms (%d pings)"
                % (i + 1, rg[-1]["window"].get("p99_ms", float("nan")), rg[-1]["window"].get("max_ms", float("nan")),
                   rg[-1]["window"]["count"], sub[-1]["window"].get("p99_ms", float("nan")),
                   sub[-1]["window"].get("max_ms", float("nan")), sub[-1]["window"]["count"]))
        ours.check_alive("after R4")
    for r in rg:
        expect(r["r2"]["lost"] == 0, f"R4: the registration lost {r['r2']['lost']} events")
        expect(r["window"]["count"] > 0, "R4: no PING completed in the window")
    raw["r4"] = {"events": n, "idle": idle, "rustgears": rg, "subscriber": sub,
                 "rustgears_p99_ms_median": median([r["window"]["p99_ms"] for r in rg]),
                 "rustgears_max_ms_median": median([r["window"]["max_ms"] for r in rg]),
                 "rustgears_max_ms_worst": max(r["window"]["max_ms"] for r in rg),
                 "subscriber_p99_ms_median": median([r["window"]["p99_ms"] for r in sub]),
                 "subscriber_max_ms_median": median([r["window"]["max_ms"] for r in sub])}


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


def r3_run(srv, n, consumer=False):
    c = srv.client()
    c.set("counter", 0)
    ch = None
    try:
        if consumer:
            ch = Child("--_consumer", str(srv.port))
            ch.wait_ready()
        w = Writers(srv.port, "xadd", n, R_WRITERS, "s")
        res = watch(lambda: int(c.get("counter") or 0), n, w)
        if ch:
            ch.send("stop")
            ch.result()
    finally:
        if ch:
            ch.close()
    time.sleep(0.05)
    final = int(c.get("counter") or 0)
    c.close()
    expect(final == n, f"R3 {'consumer' if consumer else 'registration'}: counter is {final} after {n} XADDs")
    secs = res["t_done"] - res["writers"]["t_first"]
    return {"entries": n, "seconds": secs, "entries_per_s": n / secs,
            "writers_seconds": res["writers"]["t_last"] - res["writers"]["t_first"]}


def r3(workdir, module, cfg, raw):
    n = cfg["r3_entries"]
    with Server(workdir, "r3-reg", module) as ours, Server(workdir, "r3-client") as anchor:
        c = ours.client()
        register(c, R3_SCRIPT)
        c.close()
        c = anchor.client()
        c.xgroup_create("s", "g", id="0", mkstream=True)
        c.close()
        r3_run(ours, 1000)  # warm-up
        r3_run(anchor, 1000, consumer=True)
        rg, cons = [], []
        for i in range(cfg["r3_runs"]):
            rg.append(r3_run(ours, n))
            cons.append(r3_run(anchor, n, consumer=True))
            log(f"R3 run {i + 1}: StreamReader registration {rg[-1]['entries_per_s']:.0f} entries/s, "
                f"XREADGROUP consumer {cons[-1]['entries_per_s']:.0f} entries/s")
        ours.check_alive("after R3")
        c = ours.client()
        stats = check_registration(c, "R3")
        left = c.xlen("s")
        pending = c.xpending("s", "__gears_consumer_group__")["pending"]
        c.close()
    expect(pending == 0, f"R3: {pending} entries left unacknowledged")
    raw["r3"] = {"entries": n, "script": R3_SCRIPT, "rustgears": rg, "consumer": cons, "registration": stats,
                 "stream_length_after": left,
                 "rustgears_entries_per_s_median": median([r["entries_per_s"] for r in rg]),
                 "consumer_entries_per_s_median": median([r["entries_per_s"] for r in cons])}


def used_memory(c):
    return int(c.info("memory")["used_memory"])


def r5(workdir, module, cfg, raw):
    n = cfg["r5_sets"]
    with Server(workdir, "r5", module) as srv:
        c = srv.client()
        register(c, R5_SCRIPT)
        pending_bound = c.execute_command("RG.CONFIGGET", "MaxPendingEventsPerRegistration")
        c.set("f:-1", 1)  # warm-up: one event through the registration
        deadline = time.monotonic() + 30
        while int(c.get("processed") or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        c.delete("processed", "f:-1")
        time.sleep(0.5)
        base_mem, base_rss = used_memory(c), srv.rss_kb() * 1024
        samples = []
        stop = threading.Event()

        def sampler():
            sc = srv.client()
            while not stop.is_set():
                try:
                    samples.append((time.perf_counter(), used_memory(sc), srv.rss_kb() * 1024))
                except Exception:
                    pass
                stop.wait(0.2)
            sc.close()

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        try:
            w = Writers(srv.port, "set", n, R_WRITERS, "f:", "1")
            res = watch(lambda: int(c.get("processed") or 0), n, w, deadline_s=1800, stall_s=60, poll=0.05)
        finally:
            stop.set()
            th.join(timeout=10)
        time.sleep(1.0)  # nothing may arrive late: each event exactly once
        processed = int(c.get("processed") or 0)
        sample = {as_str(k): int(v) for k, v in c.hgetall("sample").items()}
        end_mem, end_rss = used_memory(c), srv.rss_kb() * 1024
        dbsize = c.dbsize()
        srv.check_alive("after R5")
        stats = check_registration(c, "R5")
        c.close()
    want = {f"f:{i}" for i in range(0, n, 1000)}
    max_mem = max([s[1] for s in samples] + [end_mem])
    max_rss = max([s[2] for s in samples] + [end_rss])
    wr = res["writers"]
    raw["r5"] = {"sets": n, "script": R5_SCRIPT, "writers": R_WRITERS, "pipeline": R_PIPELINE,
                 "max_pending_events_per_registration": str(pending_bound),
                 "processed": processed, "dbsize": dbsize, "registration": stats,
                 "writers_seconds": wr["t_last"] - wr["t_first"],
                 "seconds": res["t_done"] - wr["t_first"],
                 "sets_per_s": n / (wr["t_last"] - wr["t_first"]),
                 "events_per_s": processed / (res["t_done"] - wr["t_first"]),
                 "baseline_used_memory": base_mem, "baseline_rss": base_rss,
                 "max_used_memory": max_mem, "max_rss": max_rss, "end_used_memory": end_mem, "end_rss": end_rss,
                 "max_used_memory_growth_mb": (max_mem - base_mem) / 2 ** 20,
                 "max_rss_growth_mb": (max_rss - base_rss) / 2 ** 20,
                 "bound_mb": R5_MEMORY_BOUND_MB, "samples": len(samples)}
    log("R5: %d SETs in %.1f s (%.0f/s); all processed after %.1f s (%.0f events/s); used_memory max +%.1f MB, "
        "RSS max +%.1f MB (bound +%d MB)" % (n, raw["r5"]["writers_seconds"], raw["r5"]["sets_per_s"],
                                             raw["r5"]["seconds"], raw["r5"]["events_per_s"],
                                             raw["r5"]["max_used_memory_growth_mb"], raw["r5"]["max_rss_growth_mb"],
                                             R5_MEMORY_BOUND_MB))
    expect(processed == n, f"R5: processed is {processed} after {n} SETs (every event exactly once)")
    bad = {k: v for k, v in sample.items() if v != 1}
    expect(set(sample) == want and not bad,
           f"R5: sampled keys: {len(want - set(sample))} never processed, {len(set(sample) - want)} unexpected, "
           f"{len(bad)} processed more than once (e.g. {list(bad.items())[:3]})")
    expect(raw["r5"]["max_used_memory_growth_mb"] <= R5_MEMORY_BOUND_MB,
           f"R5: used_memory grew by {raw['r5']['max_used_memory_growth_mb']:.0f} MB (bound {R5_MEMORY_BOUND_MB} MB)")
    expect(raw["r5"]["max_rss_growth_mb"] <= R5_MEMORY_BOUND_MB,
           f"R5: RSS grew by {raw['r5']['max_rss_growth_mb']:.0f} MB (bound {R5_MEMORY_BOUND_MB} MB)")


# ---------------------------------------------------------------------------------------------
# A1-A2 asynchronous steps: executions parked on futures must not take workers away (A1), and
# the cost of a coroutine step per record (A2).

# One session parks `n` independent executions (run() from a trigger's step), each on a
# gearsFuture kept in the session's globals; `release` continues them all, and each resolved
# execution RPUSHes its value, so that the harness can check every one resolved exactly once.
A1_SCRIPT = """
parked = []
def park(x):
    f = gearsFuture()
    parked.append(lambda: f.continueRun(x * 2))
    return f
def spawn(x):
    for i in range(int(x[1])):
        GB('ShardsIDReader').map(lambda r, i=i: i).map(park).foreach(lambda v: execute('RPUSH', 'resolved', v)).run()
    return 'spawned'
def release(x):
    items = list(parked)
    del parked[:]
    for fn in items:
        fn()
    return len(items)
GB('CommandReader').map(spawn).register(trigger='spawn')
GB('CommandReader').map(release).register(trigger='release')
GB('CommandReader').map(lambda x: len(parked)).register(trigger='nparked')
"""
A2_ASYNC = ("async def f(r):\n    await asyncio.sleep(0)\n    return r\n"
            "GB('PythonReader').map(f).count().run(lambda: iter(range({n})))")
A2_PLAIN = ("def f(r):\n    return r\n"
            "GB('PythonReader').map(f).count().run(lambda: iter(range({n})))")


def a1_nparked(c):
    return int(as_str(c.execute_command("RG.TRIGGER", "nparked")[0]))


def a1_park(c, n):
    c.delete("resolved")
    got = c.execute_command("RG.TRIGGER", "spawn", n)
    expect([as_str(x) for x in got] == ["spawned"], f"A1: RG.TRIGGER spawn replied {got!r}")
    deadline = time.monotonic() + CMD_TIMEOUT
    while a1_nparked(c) != n:
        if time.monotonic() > deadline:
            raise ValidationError(f"A1: only {a1_nparked(c)} of {n} executions parked")
        time.sleep(0.05)


def a1_release(c, n):
    got = c.execute_command("RG.TRIGGER", "release")
    expect([as_str(x) for x in got] == [str(n)], f"A1: release continued {got!r}, expected [{n}]")
    deadline = time.monotonic() + CMD_TIMEOUT
    while c.llen("resolved") < n:
        if time.monotonic() > deadline:
            raise ValidationError(f"A1: only {c.llen('resolved')} of {n} parked executions resolved")
        time.sleep(0.05)
    vals = sorted(int(v) for v in c.lrange("resolved", 0, -1))
    expect(vals == [i * 2 for i in range(n)], f"A1: wrong values resolved ({len(vals)} values)")


def a1(workdir, module, cfg, raw):
    n, clients, parked = cfg["a1_requests"], cfg["a1_clients"], cfg["a1_parked"]
    with Server(workdir, "a1", module, ["ExecutionThreads", 3, "MaxExecutions", 10000]) as srv:
        c = srv.client()
        register(c, A1_SCRIPT)
        got = c.execute_command("RG.PYEXECUTE", TRIVIAL_SCRIPT)
        expect(got in (b"OK", "OK"), f"RG.PYEXECUTE {TRIVIAL_SCRIPT!r}: expected OK, got {got!r}")
        cmd = ("RG.PYEXECUTE", TRIVIAL_SCRIPT)
        redis_benchmark(srv.port, clients, max(1000, n // 10), *cmd)  # warm-up
        a1_park(c, parked)  # warm-up of the parking path
        a1_release(c, parked)
        before = commandstats(c, "rg.pyexecute")
        none_runs, parked_runs = [], []
        for i in range(cfg["a1_runs"]):  # interleaved: both see the same machine noise
            none_runs.append(redis_benchmark(srv.port, clients, n, *cmd))
            a1_park(c, parked)
            parked_runs.append(redis_benchmark(srv.port, clients, n, *cmd))
            still = a1_nparked(c)
            expect(still == parked, f"A1: {still} executions parked after the run, expected {parked}")
            a1_release(c, parked)
            log(f"A1 run {i + 1}: RG.PYEXECUTE {TRIVIAL_SCRIPT!r} {none_runs[-1]['rps']:.0f} rps with none parked, "
                f"{parked_runs[-1]['rps']:.0f} rps with {parked} parked")
        after = commandstats(c, "rg.pyexecute")
        failed = after.get("failed_calls", 0) - before.get("failed_calls", 0)
        expect(failed == 0, f"A1: {failed} failed RG.PYEXECUTE calls")
        srv.check_alive("after A1")
        c.close()
    raw["a1"] = {"clients": clients, "requests": n, "parked": parked, "script": A1_SCRIPT,
                 "none_parked": none_runs, "parked_runs": parked_runs,
                 "none_rps_median": median([r["rps"] for r in none_runs]),
                 "parked_rps_median": median([r["rps"] for r in parked_runs]), "failed_calls": failed}


def a2(workdir, module, cfg, raw):
    n = cfg["a2_records"]
    with Server(workdir, "a2", module) as srv:
        c = srv.client()
        scripts = {"async": A2_ASYNC.format(n=n), "plain": A2_PLAIN.format(n=n)}

        def run(kind):
            results, _ = pyexecute(c, scripts[kind])
            expect([as_str(x) for x in results] == [str(n)], f"A2 {kind}: expected [{n}], got {str(results)[:200]}")

        run("async")  # warm-up
        run("plain")
        secs = {"async": [], "plain": []}
        for i in range(cfg["a2_runs"]):  # interleaved
            for kind in ("async", "plain"):
                secs[kind].append(timed(run, kind)[0])
            log(f"A2 run {i + 1}: {n:,} records through an async def map in {secs['async'][-1]:.2f}s, "
                f"through a plain def in {secs['plain'][-1]:.2f}s")
        srv.check_alive("after A2")
        c.close()
    med = {k: median(v) for k, v in secs.items()}
    raw["a2"] = {"records": n, "scripts": scripts, "seconds": secs, "median_seconds": med,
                 "records_per_s": {k: n / v for k, v in med.items()}}


# ---------------------------------------------------------------------------------------------
# machine and versions


def sh(*cmd):
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over `seconds` (from /proc/stat), before we start anything:
    the benchmark shares the machine with whatever else runs."""
    def sample():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return idle, sum(vals)
    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
        return 1.0 - (i1 - i0) / max(t1 - t0, 1)
    except (OSError, ValueError, IndexError):
        return None


def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {"nproc": nproc, "cpu_model": cpu or platform.processor() or "unknown", "memory": mem,
            "kernel": platform.release(), "loadavg_start": os.getloadavg(), "cpu_busy_before": cpu_busy()}


def rustc_version():
    for cand in (shutil.which("rustc"), os.path.expanduser("~/.cargo/bin/rustc")):
        if cand and os.path.exists(cand):
            v = sh(cand, "--version")
            if v:
                return v
    return "unavailable"


def file_sha256(path):
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions(main_server, module):
    v = {"redis_server": sh(REDIS_SERVER, "--version"), "redis_benchmark": sh(REDIS_BENCHMARK, "--version"),
         "rustc": rustc_version(), "python": f"{platform.python_implementation()} {platform.python_version()}",
         "module_path": module}
    try:
        import redis

        v["redis_py"] = redis.__version__
    except Exception:
        pass
    try:
        c = main_server.client()
        for m in c.execute_command("MODULE", "LIST"):
            if isinstance(m, list):
                m = dict(zip(m[::2], m[1::2]))
            if as_str(m.get(b"name", m.get("name"))) == "rg":
                ver = int(m.get(b"ver", m.get("ver")))
                v["module"] = f"rg {ver} ({ver // 10000}.{ver // 100 % 100}.{ver % 100})"
        c.close()
    except Exception as e:
        v["module"] = f"unknown ({e})"
    commit = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD")
    if commit and "fatal" not in commit:
        dirty = sh("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no")
        v["git"] = commit + (" (uncommitted changes)" if dirty else "")
    v["module_sha256"] = file_sha256(module)[:16]
    try:
        st = os.stat(module)
        v["module_built"] = datetime.datetime.fromtimestamp(st.st_mtime).astimezone().isoformat(timespec="seconds")
    except OSError:
        pass
    return v


# ---------------------------------------------------------------------------------------------
# the table


def fmt_num(x, unit=""):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    a = abs(x)
    if a >= 1e6:
        s = f"{x / 1e6:.2f}M"
    elif a >= 1e4:
        s = f"{x / 1e3:.1f}k"
    elif a >= 100:
        s = f"{x:.0f}"
    elif a >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return f"{s} {unit}".strip()


def row(fid, name, measured, unit, anchor_desc=None, anchor=None, anchor_unit=None, target=None,
        target_on="ratio", target_op=">=", note=None, error=None):
    """One figure. ratio = measured / anchor. target applies to `ratio` or `measured`."""
    ratio = measured / anchor if (measured is not None and anchor) else None
    met = None
    if target is not None and error is None:
        v = ratio if target_on == "ratio" else measured
        if v is not None:
            met = v >= target if target_op == ">=" else v <= target
    if target is None:
        tdesc = "—"
    elif target_on == "ratio":
        tdesc = f"ratio {'≥' if target_op == '>=' else '≤'} {target:g}×"
    else:
        tdesc = f"{'≥' if target_op == '>=' else '≤'} {fmt_num(target, unit)}"
    return {"id": fid, "name": name, "measured": measured, "unit": unit, "anchor_desc": anchor_desc,
            "anchor": anchor, "anchor_unit": anchor_unit or unit, "ratio": ratio, "target": target,
            "target_on": target_on, "target_op": target_op, "target_desc": tdesc, "met": met,
            "note": note, "error": error}


def build_rows(raw, errors):
    rows = []

    def err(key):
        return errors.get(key)

    p1 = raw.get("p1", {})
    rows.append(row("P1", "per-call overhead: RG.PYEXECUTE '1', 50 clients", p1.get("rustgears_rps_median"),
                    "req/s", "EVAL 'return 1' 0", p1.get("lua_rps_median"), target=0.5, error=err("p1")))
    p2 = raw.get("p2", {}).get("records_per_s", {})
    rows.append(row("P2a", "scan: GB().count().run()", p2.get("count"), "rec/s", target=1e6,
                    target_on="measured", error=err("p2")))
    rows.append(row("P2b", "word count: GB().countby(value)", p2.get("countby"), "rec/s", target=0.4e6,
                    target_on="measured", error=err("p2")))
    rows.append(row("P2c", "word count vs client-side redis-py", p2.get("countby"), "rec/s",
                    "SCAN+MGET+Counter (redis-py)", p2.get("client"), target=2.5, error=err("p2")))
    rows.append(row("P2d", "word count vs Lua EVAL", p2.get("countby"), "rec/s", "Lua SCAN+GET in one EVAL",
                    p2.get("lua"), target=0.6, error=err("p2")))
    p3 = raw.get("p3", {}).get("jobs_per_s", {})
    rows.append(row("P3", f"parallelism: {raw.get('p3', {}).get('clients', 8)} CPU-bound jobs, ExecutionThreads 2",
                    p3.get("et2"), "jobs/s", "same on ExecutionThreads 1", p3.get("et1"), target=1.8,
                    error=err("p3")))
    p4 = raw.get("p4", {})
    rows.append(row("P4a", "max PING latency during countby", p4.get("countby_max_ms_median"), "ms",
                    "max PING latency during Lua word count", p4.get("lua_max_ms_median"), target=5,
                    target_on="measured", target_op="<=", error=err("p4")))
    lua_pings = median([r["window"]["count"] for r in p4.get("lua", [])]) if p4.get("lua") else None
    rows.append(row("P4b", "p99 PING latency during countby", p4.get("countby_p99_ms_median"), "ms",
                    "p99 PING latency during Lua word count"
                    + (f" (only {lua_pings:g} PINGs in flight)" if lua_pings is not None and lua_pings < 100 else ""),
                    p4.get("lua_p99_ms_median"), error=err("p4")))
    p5 = raw.get("p5", {})
    rows.append(row("P5a", "MODULE LOAD time (ExecutionThreads 3)", p5.get("module_load_ms_median"), "ms",
                    target=100, target_on="measured", target_op="<=", error=err("p5"),
                    note="first RG.PYEXECUTE after load: %s" % fmt_num(p5.get("first_exec_ms_median"), "ms")))
    rss_anchor = None
    if p5.get("rss_et1_mb_median") is not None:
        rss_anchor = "RSS ET1 %.1f MB, ET5 %.1f MB, no module %.1f MB" % (
            p5["rss_et1_mb_median"], p5["rss_et5_mb_median"], p5["rss_none_mb_median"])
    rows.append(row("P5b", "RSS per worker VM: (RSS_ET5 - RSS_ET1)/4", p5.get("per_vm_mb_median"), "MB",
                    rss_anchor, None, target=10, target_on="measured", target_op="<=", error=err("p5")))
    p6 = raw.get("p6", {})
    rows.append(row("P6", f"interpreter: fib({FIB_N}) in RustPython (module)",
                    p6.get("rustpython_fib_s") * 1e3 if p6.get("rustpython_fib_s") else None, "ms",
                    "same function in " + p6.get("cpython", "CPython"),
                    p6.get("cpython_fib_s") * 1e3 if p6.get("cpython_fib_s") else None, error=err("p6")))
    s1 = raw.get("s1", {})
    rows.append(row("S1", "round trip of a call on behalf of the main thread (median, server side)",
                    s1.get("sync_us_median"), "us", target=20, target_on="measured", target_op="<=", error=err("s1")))
    rows.append(row("S1b", "no-op script body on behalf of the main thread (median, server side)",
                    s1.get("sync_body_us_median"), "us", "the same body as RG.PYEXECUTE (blocked time)",
                    s1.get("pyexecute_us_median"), error=err("s1")))
    r1 = raw.get("r1", {})
    rows.append(row("R1", "write-through: SET + sync registration XADD, 50 clients", r1.get("rustgears_ops_median"),
                    "ops/s", "Lua EVAL of SET + XADD", r1.get("lua_ops_median"), target=0.3, error=err("r1")))
    r2 = raw.get("r2", {})
    rows.append(row("R2", "write-behind: async registration mirrors SETs into a hash",
                    r2.get("rustgears_events_per_s_median"), "ev/s", "redis-py keyspace-notification subscriber",
                    r2.get("subscriber_events_per_s_median"), target=2, error=err("r2"),
                    note=None if not r2 else "events lost: registration %d, subscriber %d (%d disconnects) over %d "
                    "runs of %s events" % (r2["rustgears_lost_total"], r2["subscriber_lost_total"],
                                           r2["subscriber_disconnects_total"], len(r2["rustgears"]),
                                           f"{r2['events']:,}")))
    rows.append(row("R2b", "write-behind vs a batched subscriber (pipelines of 100 GETs, then HSETs)",
                    r2.get("rustgears_events_per_s_median"), "ev/s", "redis-py subscriber, batched and pipelined",
                    r2.get("batched_events_per_s_median"), error=err("r2"),
                    note=None if not r2 else "batched subscriber lost %d events" % r2["batched_lost_total"]))
    r3 = raw.get("r3", {})
    rows.append(row("R3", "streams: StreamReader batch=100, INCRBY per entry", r3.get("rustgears_entries_per_s_median"),
                    "ent/s", "redis-py XREADGROUP COUNT 100 + INCR + XACK", r3.get("consumer_entries_per_s_median"),
                    target=2, error=err("r3")))
    r4 = raw.get("r4", {})
    rows.append(row("R4a", "p99 PING latency during R2 (registration)", r4.get("rustgears_p99_ms_median"), "ms",
                    "p99 PING latency during R2 (subscriber)", r4.get("subscriber_p99_ms_median"), target=1,
                    target_on="measured", target_op="<=", error=err("r4")))
    rows.append(row("R4b", "max PING latency during R2 (registration)", r4.get("rustgears_max_ms_median"), "ms",
                    "max PING latency during R2 (subscriber)", r4.get("subscriber_max_ms_median"), error=err("r4")))
    r5 = raw.get("r5", {})
    rows.append(row("R5a", "flood: used_memory growth, %s SETs vs slow async registration"
                    % f"{r5.get('sets', 1_000_000):,}", r5.get("max_used_memory_growth_mb"), "MB",
                    "max RSS growth: %s" % fmt_num(r5.get("max_rss_growth_mb"), "MB") if r5 else None, None,
                    target=R5_MEMORY_BOUND_MB, target_on="measured", target_op="<=", error=err("r5")))
    rows.append(row("R5b", "flood: events processed per second (each exactly once)", r5.get("events_per_s"), "ev/s",
                    "SETs per second by the writers" if r5 else None, r5.get("sets_per_s"), error=err("r5")))
    a1 = raw.get("a1", {})
    rows.append(row("A1", "RG.PYEXECUTE '1', 50 clients, while %s executions are parked on futures"
                    % f"{a1.get('parked', 1000):,}", a1.get("parked_rps_median"), "req/s",
                    "the same with none parked", a1.get("none_rps_median"), target=0.9, error=err("a1")))
    a2 = raw.get("a2", {}).get("records_per_s", {})
    rows.append(row("A2", "async def map awaiting asyncio.sleep(0) per record, %s records"
                    % f"{raw.get('a2', {}).get('records', 100_000):,}", a2.get("async"), "rec/s",
                    "the same pipeline with a plain def", a2.get("plain"), error=err("a2")))
    return rows


def anchor_cell(r):
    if r["anchor"] is not None:
        return f"{r['anchor_desc']}: {fmt_num(r['anchor'], r['anchor_unit'])}"
    return r["anchor_desc"] or "—"


def met_cell(r):
    if r["error"]:
        return "ERROR"
    if r["met"] is None:
        return "—" if r["target"] is None else "n/a"
    return "met" if r["met"] else "NOT met"


def table_lines(rows, markdown):
    head = ["#", "figure", "measured", "anchor (same run)", "ratio", "target", "met"]
    body = []
    for r in rows:
        body.append([r["id"], r["name"], "error" if r["error"] else fmt_num(r["measured"], r["unit"]),
                     anchor_cell(r), f"{r['ratio']:.2f}×" if r["ratio"] is not None else "—",
                     r["target_desc"], met_cell(r)])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
        return out
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*head), fmt.format(*["-" * w for w in widths])] + [fmt.format(*b) for b in body]


# ---------------------------------------------------------------------------------------------
# chart (hand-written SVG: no plotting dependency)


def svg_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart_svg(rows, title):
    """Two stacked panels of log-scale bars. Top: how far each figure is from its target (score =
    measured/target for ≥ targets, target/measured for ≤ targets; 1 = on target; green = met).
    Bottom: ratio measured / anchor (1 = as fast / as large as the anchor)."""
    def score(r):
        v = r["ratio"] if r["target_on"] == "ratio" else r["measured"]
        if v is None or r["target"] is None or v <= 0:
            return None
        return v / r["target"] if r["target_op"] == ">=" else r["target"] / v

    panels = [
        ("Measured vs target (log scale; right of the dashed line = target met)",
         [(r, score(r)) for r in rows if r["target"] is not None]),
        ("Ratio measured / anchor, both from this run (log scale)",
         [(r, r["ratio"]) for r in rows if r["ratio"] is not None or (r["anchor_desc"] and r["error"])]),
    ]
    W, rowh, left, barw = 1060, 24, 370, 420
    out = []
    y = 40
    for ptitle, items in panels:
        vals = [v for _, v in items if v]
        lo = max(min([0.1] + vals) / 1.5, 1e-4)
        hi = min(max([10.0] + vals) * 1.5, 1e5)
        span = math.log10(hi) - math.log10(lo)

        def X(v):
            v = min(max(v, lo), hi)
            return left + (math.log10(v) - math.log10(lo)) / span * barw

        out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{svg_escape(ptitle)}</text>')
        top = y + 26
        bottom = top + len(items) * rowh
        for d in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1):
            gx = X(10 ** d)
            out.append(f'<line x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{bottom}" stroke="#ddd"/>')
            out.append(f'<text x="{gx:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#666">{10.0 ** d:g}</text>')
        for i, (r, v) in enumerate(items):
            ry = top + i * rowh
            out.append(f'<text x="{left - 8}" y="{ry + 16}" text-anchor="end">'
                       f'{svg_escape((r["id"] + " " + r["name"])[:58])}</text>')
            if v is None:
                out.append(f'<text x="{left + 4}" y="{ry + 16}" fill="#a00">{"error" if r["error"] else "n/a"}</text>')
                continue
            if panels[0][1] is items:
                color = "#3a3" if r["met"] else "#c33"
                shown = fmt_num(r["measured"], r["unit"]) if r["target_on"] == "measured" else f"{r['ratio']:.2f}×"
                txt = f"{shown} (target {r['target_desc']})"
            else:
                color = "#47a"
                txt = f"{v:.3g}×  ({fmt_num(r['measured'], r['unit'])} vs {fmt_num(r['anchor'], r['anchor_unit'])})"
            xb = X(v)
            out.append(f'<rect x="{left}" y="{ry + 4}" width="{max(xb - left, 1):.1f}" height="{rowh - 8}" fill="{color}"/>')
            out.append(f'<text x="{xb + 5:.1f}" y="{ry + 16}" fill="#222">{svg_escape(txt)}</text>')
        one = X(1)
        out.append(f'<line x1="{one:.1f}" y1="{top - 4}" x2="{one:.1f}" y2="{bottom + 2}" stroke="#000" '
                   'stroke-dasharray="4,3"/>')
        y = bottom + 30
    H = y + 10
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            'font-family="sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="10" y="24" font-size="15" font-weight="bold">{svg_escape(title)}</text>']
    return "\n".join(head + out + ["</svg>"]) + "\n"


# ---------------------------------------------------------------------------------------------
# summary


def busy_warning(m):
    busy = m.get("cpu_busy_before")
    if busy is not None and busy > 0.25:
        return (f"Warning: {busy * 100:.0f}% of the CPUs were busy with other processes just before the run: "
                "throughput and parallelism figures are lower than on an idle machine")
    return None


def params_text(p, raw):
    wl = p.get("workloads", WORKLOADS)
    out = []
    if "p2" in wl or "p4" in wl or "p3" in wl or "p5" in wl:
        out.append(f"{p['keys']:,} keys ({raw.get('p2', {}).get('distinct_words', '?')} distinct words), "
                   f"{p['runs']} runs per heavy figure"
                   + (f" (P2/P4 reduced to {p['scan_runs']} by the time budget)"
                      if p.get('scan_runs', p['runs']) != p['runs'] else ""))
    if "p1" in wl:
        out.append(f"P1 {p['p1_runs']} × {p['p1_requests']:,} requests")
    if "r1" in wl:
        out.append(f"R1 {p['r1_runs']} × {p['r1_requests']:,} requests")
    if "r2" in wl or "r4" in wl:
        out.append(f"R2 {p['r2_runs']} × {p['r2_events']:,} events, R4 {p['r4_runs']} runs")
    if "r3" in wl:
        out.append(f"R3 {p['r3_runs']} × {p['r3_entries']:,} entries")
    if "r5" in wl:
        out.append(f"R5 {p['r5_sets']:,} SETs")
    if "a1" in wl:
        out.append(f"A1 {p['a1_runs']} × {p['a1_requests']:,} requests, {p['a1_parked']:,} parked")
    if "a2" in wl:
        out.append(f"A2 {p['a2_runs']} × {p['a2_records']:,} records")
    return ", ".join(out) or "none"


def summary_md(meta, rows, raw, errors):
    m, v = meta["machine"], meta["versions"]
    L = [f"# rustgears benchmark — {meta['mode']} run", "",
         f"Date: {meta['date']}  ·  total wall time: {meta['wall_seconds']:.0f} s  ·  "
         f"generated by `python3 bench/run.py{' --quick' if meta['mode'] == 'quick' else ''}` "
         "(method: [docs/performance.md](../../docs/performance.md))", "",
         "## Machine", "",
         f"- CPUs (nproc): {m['nproc']} — {m['cpu_model']}",
         f"- memory: {m['memory']}; kernel {m['kernel']}",
         "- load average at start: %s; at end: %s; CPUs busy in the second before the run: %s "
         "(other processes on the machine share the CPUs)" % (
             " ".join(f"{x:.2f}" for x in m["loadavg_start"]),
             " ".join(f"{x:.2f}" for x in m.get("loadavg_end", ())),
             "?" if m.get("cpu_busy_before") is None else f"{m['cpu_busy_before'] * 100:.0f}%"),
         "", "## Versions", "",
         f"- {v.get('redis_server')}",
         f"- module: {v.get('module')} — {v.get('module_path')} (built {v.get('module_built', '?')}, "
         f"sha256 {v.get('module_sha256', '?')}…; every server loaded a copy taken at the start)",
         f"- source: git {v.get('git', '?')}",
         f"- {v.get('rustc')}",
         f"- harness and anchors: {v.get('python')}, redis-py {v.get('redis_py', '?')}, {v.get('redis_benchmark')}",
         "", "## Figures", "",
         "Medians of several runs; ratio = measured / anchor, both measured in this run. "
         "Parameters: " + params_text(meta["params"], raw) + ".", ""]
    L += table_lines(rows, markdown=True)
    notes = [f"- {r['id']}: {r['note']}" for r in rows if r["note"]]
    if busy_warning(m):
        notes.insert(0, "- **" + busy_warning(m) + "**")
    p4 = raw.get("p4", {})
    if p4.get("idle"):
        notes.append("- P4 idle baseline (no job): PING max %.2f ms, p99 %.3f ms; worst countby max over runs "
                     "%.2f ms" % (p4["idle"]["window"]["max_ms"], p4["idle"]["window"]["p99_ms"],
                                  p4.get("countby_max_ms_worst", float("nan"))))
    p3 = raw.get("p3")
    if p3:
        notes.append(f"- P3 job: `{p3['script']}` (loop size calibrated to ~{meta['params']['p3_target_s']} s "
                     f"on one worker; single job took {median(p3['single_job_seconds_et1']):.2f} s)" + (
                         f". On ExecutionThreads 2 the workers used {p3['et2_worker_cores_used_median']:.2f} "
                         f"cores on average and spent {p3['et2_worker_runqueue_wait_median_s']:.2f} s runnable "
                         "but waiting for a CPU (schedstat; median per run of "
                         f"{median(p3['wall_seconds']['et2']):.2f} s wall)"
                         if p3.get("et2_worker_cores_used_median") is not None else ""))
    p2 = raw.get("p2")
    if p2:
        ms = p2["median_seconds"]
        notes.append("- P2 median wall times: count %.2f s, countby %.2f s, client-side %.2f s, Lua %.2f s; "
                     "data load %.1f s" % (ms["count_s"], ms["countby_s"], ms["client_s"], ms["lua_s"],
                                          raw.get("load_seconds", float("nan"))))
    r1 = raw.get("r1")
    if r1:
        notes.append(f"- R1 registration: `{r1['script']}`; `redis-benchmark -c {r1['clients']} -r 100000 SET "
                     f"key:__rand_int__ v` against `EVAL \"{r1['lua']}\" 1 key:__rand_int__ v` on a server without "
                     f"the module; XLEN audit = {r1['xlen_audit']:,} = the number of SETs")
    r2 = raw.get("r2")
    if r2:
        notes.append(f"- R2 registration: `{r2['script']}`; {R_WRITERS} writer processes, {R_PIPELINE} SETs per round "
                     "trip; time from the first SET until HLEN mirror = the number of keys")
    r3 = raw.get("r3")
    if r3:
        notes.append(f"- R3 registration: `{r3['script']}`; {R_WRITERS} writer processes, {R_PIPELINE} XADDs per "
                     "round trip; time from the first XADD until the counter = the number of entries")
    r4 = raw.get("r4")
    if r4:
        notes.append("- R4 idle baseline (registration server, no job): PING max %.2f ms, p99 %.3f ms; worst max "
                     "during R2 %.2f ms" % (r4["idle"]["window"]["max_ms"], r4["idle"]["window"]["p99_ms"],
                                            r4["rustgears_max_ms_worst"]))
    r5 = raw.get("r5")
    if r5:
        notes.append("- R5: %s SETs (%d writer processes, %d per round trip) took %.1f s (%.0f/s); every event "
                     "processed after %.1f s; used_memory %.1f MB before, max %.1f MB, %.1f MB at the end; RSS %.1f MB "
                     "before, max %.1f MB; MaxPendingEventsPerRegistration %s"
                     % (f"{r5['sets']:,}", r5["writers"], r5["pipeline"], r5["writers_seconds"], r5["sets_per_s"],
                        r5["seconds"], r5["baseline_used_memory"] / 2 ** 20, r5["max_used_memory"] / 2 ** 20,
                        r5["end_used_memory"] / 2 ** 20, r5["baseline_rss"] / 2 ** 20, r5["max_rss"] / 2 ** 20,
                        r5["max_pending_events_per_registration"]))
    a1 = raw.get("a1")
    if a1:
        notes.append(f"- A1: `redis-benchmark -c {a1['clients']} RG.PYEXECUTE 1` on a server with ExecutionThreads 3, "
                     f"run alternately with no execution parked and with {a1['parked']:,} executions each waiting on "
                     "a gearsFuture (started by one trigger, continued by another; every one checked to resolve "
                     "exactly once after each run)")
    a2 = raw.get("a2")
    if a2:
        notes.append("- A2: `GB('PythonReader').map(f).count().run(...)` over %s records, f an `async def` that "
                     "awaits `asyncio.sleep(0)` against a plain `def`; median wall times %.2f s and %.2f s"
                     % (f"{a2['records']:,}", a2["median_seconds"]["async"], a2["median_seconds"]["plain"]))
    if notes:
        L += ["", "Notes:", ""] + notes
    if errors:
        L += ["", "## Errors", ""]
        for k, e in errors.items():
            L += [f"- **{k}**:", "", "```", e.strip()[:3000], "```"]
    L += ["", "Chart: [chart.svg](chart.svg). Raw numbers (every run): [latest.json](latest.json).", ""]
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------


WORKLOADS = ("p1", "p2", "p3", "p4", "p5", "p6", "s1", "r1", "r2", "r3", "r4", "r5", "a1", "a2")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run (100k keys, fewer runs)")
    ap.add_argument("--module", help="path to librustgears.so")
    ap.add_argument("--keys", type=int, help="override the keyspace size")
    ap.add_argument("--runs", type=int, help="override the number of runs per heavy figure")
    ap.add_argument("--out", default=DEFAULT_OUT, help="results directory (default bench/results)")
    ap.add_argument("--only", help="comma-separated workloads to run (e.g. p1,r1,r2); default: all")
    ap.add_argument("--flood", action="store_true", help="run R5 (the flood) in a --quick run too")
    ap.add_argument("--_pinger", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_writer", help=argparse.SUPPRESS)
    ap.add_argument("--_subscriber", help=argparse.SUPPRESS)
    ap.add_argument("--_consumer", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._pinger:
        pinger_main(args._pinger)
        return 0
    if args._writer:
        writer_main(args._writer)
        return 0
    if args._subscriber:
        subscriber_main(args._subscriber)
        return 0
    if args._consumer:
        consumer_main(args._consumer)
        return 0

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    mode = "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    if args.keys:
        cfg["keys"] = args.keys
    if args.runs:
        cfg["runs"] = args.runs
    selected = list(WORKLOADS) if mode == "full" or args.flood else [w for w in WORKLOADS if w != "r5"]
    if args.only:
        selected = [w.strip().lower() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in selected if w not in WORKLOADS]
        if unknown:
            print(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}", file=sys.stderr)
            return 2
    cfg["workloads"] = selected
    module = os.path.abspath(module_path(args.module))
    if not os.path.exists(module):
        print(f"module not found: {module} (run `make build`, or set RUSTGEARS_MODULE)", file=sys.stderr)
        return 2
    if importlib.util.find_spec("redis") is None:
        print("redis-py is missing: python3 -m pip install redis", file=sys.stderr)
        return 2
    for tool in (REDIS_SERVER, REDIS_BENCHMARK):
        if not os.path.exists(tool):
            print(f"missing {tool} (apt-get install redis-server redis-tools)", file=sys.stderr)
            return 2

    t_start = time.perf_counter()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    machine = machine_info()
    raw, errors = {}, {}
    workdir = tempfile.mkdtemp(prefix="rustgears-bench-")
    # Every server loads one private copy: a rebuild of the module during the run (cargo
    # replaces the file) must not give later workloads a different build than earlier ones.
    source_module = module
    module = os.path.join(workdir, os.path.basename(source_module))
    shutil.copy2(source_module, module)
    log(f"{mode} run: {cfg['keys']:,} keys, module {source_module}, scratch {workdir}")

    def guarded(key, fn, *a):
        t0 = time.perf_counter()
        try:
            fn(*a)
        except Exception as e:  # record and carry on with the other workloads
            import traceback

            errors[key] = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=4))
            log(f"{key.upper()} FAILED: {type(e).__name__}: {str(e)[:500]}")
        raw.setdefault("workload_seconds", {})[key] = time.perf_counter() - t0

    ver = {}
    try:
        # main server: default module configuration (ExecutionThreads 3)
        try:
            main_srv = Server(workdir, "main", module)
        except Exception as e:
            errors["main"] = f"{type(e).__name__}: {e}"
            main_srv = None
        if main_srv:
            with main_srv:
                ver = versions(main_srv, source_module)
                if "p1" in selected:
                    log("P1 per-call overhead")
                    guarded("p1", p1, main_srv, cfg, raw)
                if "p6" in selected:
                    log("P6 interpreter")
                    guarded("p6", p6, main_srv, cfg, raw)
                expected = None
                if "p2" in selected or "p4" in selected:
                    log(f"loading {cfg['keys']:,} keys")
                    try:
                        raw["load_seconds"], expected = load_words(main_srv, cfg["keys"], cfg["vocabulary"])
                        log(f"loaded in {raw['load_seconds']:.1f}s")
                    except Exception as e:
                        errors["load"] = f"{type(e).__name__}: {e}"
                if expected is not None and "p2" in selected:
                    log("P2 scan throughput")
                    guarded("p2", p2, main_srv, cfg, raw, expected)
                if expected is not None and "p4" in selected:
                    log("P4 latency impact")
                    guarded("p4", p4, main_srv, cfg, raw, expected)
                if not main_srv.alive():
                    errors["main"] = f"main server died (exit {main_srv.proc.returncode})\n" + main_srv.log_tail()
        else:
            ver = versions_fallback(source_module)
        for key, what, fn in (("p3", "P3 parallelism", p3), ("p5", "P5 footprint", p5),
                              ("s1", "S1 calls on behalf of the main thread", s1),
                              ("r1", "R1 write-through (sync registration vs Lua)", r1),
                              ("r2", "R2 write-behind (async registration vs keyspace-notification subscriber)", r2),
                              ("r4", "R4 PING latency during R2", r4),
                              ("r3", "R3 streams (StreamReader registration vs XREADGROUP consumer)", r3),
                              ("r5", f"R5 the flood ({cfg['r5_sets']:,} SETs vs a slow async registration)", r5),
                              ("a1", f"A1 RG.PYEXECUTE while {cfg['a1_parked']:,} executions are parked", a1),
                              ("a2", f"A2 async def map over {cfg['a2_records']:,} records", a2)):
            if key in selected:
                log(what)
                guarded(key, fn, workdir, module, cfg, raw)
    finally:
        _kill_children()
        try:
            os.remove(module)  # the private copy of the module (logs stay while debugging)
        except OSError:
            pass

    machine["loadavg_end"] = os.getloadavg()
    wall = time.perf_counter() - t_start
    rows = [r for r in build_rows(raw, errors) if r["id"].rstrip("abcd").lower() in selected]
    meta = {"mode": mode, "date": date, "wall_seconds": wall, "machine": machine, "versions": ver,
            "params": cfg}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "raw": raw, "errors": errors}, f, indent=1, default=str)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(summary_md(meta, rows, raw, errors))
    with open(os.path.join(args.out, "chart.svg"), "w") as f:
        f.write(chart_svg(rows, f"rustgears benchmark ({mode}, {date}, {machine['nproc']} CPUs)"))
    sys.stderr.flush()
    print()
    print(f"rustgears benchmark — {mode} run, {date}, {machine['nproc']} × {machine['cpu_model']}")
    print(f"module {ver.get('module')}, {ver.get('redis_server')}")
    print()
    print("\n".join(table_lines(rows, markdown=False)))
    print()
    if busy_warning(machine):
        print(busy_warning(machine))
    for k, e in errors.items():
        print(f"ERROR in {k}: {e.strip().splitlines()[0]}")
    print(f"total wall time {wall:.0f} s; results in {os.path.relpath(args.out)}/"
          "(summary.md, latest.json, chart.svg)", flush=True)
    if errors:
        print(f"server logs kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def versions_fallback(module):
    return {"redis_server": sh(REDIS_SERVER, "--version"), "rustc": rustc_version(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "module_path": module, "module": "unknown (server did not start)"}


if __name__ == "__main__":
    sys.exit(main())
