"""What every workload uses: paths, run sizes (full and quick), timeouts, the scripts several
workloads share, logging, checks of results, and the redis-benchmark driver.

redis-py is imported inside the functions that need it, never at module level: the entry point
must be able to say "redis-py is missing" instead of failing on an import."""

import os
import shutil
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH_DIR)
LUA_DIR = os.path.join(BENCH_DIR, "lua")
DEFAULT_OUT = os.path.join(BENCH_DIR, "results")
# The helper processes (pinger, writers, subscriber, consumer) are this script run again with a
# hidden flag, so that they need nothing but the interpreter.
ENTRY = os.path.join(BENCH_DIR, "run.py")
HOST = "127.0.0.1"

REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"

# Generous bounds: these stop a hung run, they are never part of a measurement.
START_TIMEOUT = 60.0  # server start (module load with several interpreters)
CMD_TIMEOUT = 600.0  # one client command (a 1M-key job on a slow build)
SUBPROC_TIMEOUT = 600.0  # one redis-benchmark / CPython run

TRIVIAL_SCRIPT = "1"

MODES = {
    # keys: P2/P4 keyspace. runs: repetitions of each heavy measurement (median reported).
    "full": dict(keys=1_000_000, runs=3, p1_requests=50_000, p1_runs=5, p1_clients=50,
                 p3_clients=8, p3_target_s=0.5, p5_runs=3, p6_runs=5, vocabulary=1000, s1_calls=5000,
                 r1_requests=50_000, r1_runs=3, r1_clients=50, r2_events=100_000, r2_runs=3, r4_runs=3,
                 r3_entries=100_000, r3_runs=3, r5_sets=1_000_000,
                 a1_requests=50_000, a1_runs=3, a1_clients=50, a1_parked=1000, a2_records=100_000, a2_runs=3,
                 c1_keys=1_000_000, c2_records=1_000_000, c3_records=40_000, c_runs=3),
    "quick": dict(keys=100_000, runs=1, p1_requests=5_000, p1_runs=1, p1_clients=50,
                  p3_clients=8, p3_target_s=0.2, p5_runs=1, p6_runs=2, vocabulary=1000, s1_calls=1000,
                  r1_requests=5_000, r1_runs=1, r1_clients=50, r2_events=20_000, r2_runs=1, r4_runs=1,
                  r3_entries=20_000, r3_runs=1, r5_sets=100_000,
                  a1_requests=5_000, a1_runs=1, a1_clients=50, a1_parked=1000, a2_records=20_000, a2_runs=1,
                  c1_keys=100_000, c2_records=100_000, c3_records=10_000, c_runs=1),
}

WORKLOADS = ("p1", "p2", "p3", "p4", "p5", "p6", "s1", "r1", "r2", "r3", "r4", "r5", "a1", "a2", "c1", "c2", "c3")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else None


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


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


def expect_ok(got, what):
    expect(got in (b"OK", "OK"), f"{what}: expected OK, got {str(got)[:300]}")


def pyexecute(client, script):
    """Blocking RG.PYEXECUTE; returns (results, errors). Raises on an error reply."""
    reply = client.execute_command("RG.PYEXECUTE", script)
    if not (isinstance(reply, list) and len(reply) == 2):
        raise AssertionError(f"RG.PYEXECUTE {script!r}: unexpected reply {str(reply)[:300]}")
    results, errors = reply
    if errors:
        raise AssertionError(f"RG.PYEXECUTE {script!r}: execution errors {str(errors)[:500]}")
    return results, errors


def expect_results(c, script, want, what):
    """Runs `script`; its results, as strings, must be `want`."""
    results, _ = pyexecute(c, script)
    expect([as_str(x) for x in results] == want, f"{what}: expected {want}, got {str(results)[:200]}")


def pyexecute_trivial(c):
    """RG.PYEXECUTE '1' answers OK: checked before redis-benchmark, which counts error replies
    as requests."""
    expect_ok(c.execute_command("RG.PYEXECUTE", TRIVIAL_SCRIPT), f"RG.PYEXECUTE {TRIVIAL_SCRIPT!r}")


def register(c, script):
    expect_ok(c.execute_command("RG.PYEXECUTE", script), "RG.PYEXECUTE of a registration")


def commandstats(client, name):
    info = client.info("commandstats")
    return info.get(f"cmdstat_{name}", {})


def redis_benchmark(port, clients, requests, *command):
    """One redis-benchmark run; returns {rps, and the latency columns of its CSV line}."""
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


def benchmark_warmup(clients, requests, *targets):
    """A tenth of a measurement's requests (at least 1000) on each (port, command) target."""
    for port, cmd in targets:
        redis_benchmark(port, clients, max(1000, requests // 10), *cmd)


def benchmark_pair(clients, requests, runs, a, b, what):
    """redis-benchmark `runs` times on each (port, command) target, interleaved so that both see
    the same machine noise; returns the two lists of runs. `what(i, run_a, run_b)` is the log
    line of run i."""
    a_runs, b_runs = [], []
    for i in range(runs):
        a_runs.append(redis_benchmark(a[0], clients, requests, *a[1]))
        b_runs.append(redis_benchmark(b[0], clients, requests, *b[1]))
        log(what(i, a_runs[-1], b_runs[-1]))
    return a_runs, b_runs


def failed_calls(c, name, before):
    """(calls, failed calls) of command `name` since the commandstats snapshot `before`."""
    after = commandstats(c, name)
    return (after.get("calls", 0) - before.get("calls", 0),
            after.get("failed_calls", 0) - before.get("failed_calls", 0))
