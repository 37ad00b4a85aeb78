"""A1-A2 asynchronous steps: executions parked on futures must not take workers away (A1:
redis-benchmark of RG.PYEXECUTE with none and with many parked), and the cost of a coroutine
step per record (A2: an async def map against a plain def)."""

import time

from .common import (CMD_TIMEOUT, TRIVIAL_SCRIPT, ValidationError, as_str, benchmark_warmup, commandstats, expect,
                     expect_results, failed_calls, log, median, pyexecute_trivial, redis_benchmark, register,
                     timed)
from .servers import Server

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


# ---------------------------------------------------------------------------------------------
# A1 parked executions


def a1_nparked(c):
    return int(as_str(c.execute_command("RG.TRIGGER", "nparked")[0]))


def _wait_for(done, failure):
    """Polls done() until it is true; raises ValidationError(failure()) after CMD_TIMEOUT."""
    deadline = time.monotonic() + CMD_TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise ValidationError(failure())
        time.sleep(0.05)


def a1_park(c, n):
    c.delete("resolved")
    got = c.execute_command("RG.TRIGGER", "spawn", n)
    expect([as_str(x) for x in got] == ["spawned"], f"A1: RG.TRIGGER spawn replied {got!r}")
    _wait_for(lambda: a1_nparked(c) == n, lambda: f"A1: only {a1_nparked(c)} of {n} executions parked")


def a1_release(c, n):
    got = c.execute_command("RG.TRIGGER", "release")
    expect([as_str(x) for x in got] == [str(n)], f"A1: release continued {got!r}, expected [{n}]")
    _wait_for(lambda: c.llen("resolved") >= n,
              lambda: f"A1: only {c.llen('resolved')} of {n} parked executions resolved")
    vals = sorted(int(v) for v in c.lrange("resolved", 0, -1))
    expect(vals == [i * 2 for i in range(n)], f"A1: wrong values resolved ({len(vals)} values)")


def _a1_runs(srv, c, cfg, cmd):
    """The measured runs, alternately with none and with a1_parked executions parked."""
    n, clients, parked = cfg["a1_requests"], cfg["a1_clients"], cfg["a1_parked"]
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
    return none_runs, parked_runs


def a1(workdir, module, cfg, raw):
    n, clients, parked = cfg["a1_requests"], cfg["a1_clients"], cfg["a1_parked"]
    with Server(workdir, "a1", module, ["ExecutionThreads", 3, "MaxExecutions", 10000]) as srv:
        c = srv.client()
        register(c, A1_SCRIPT)
        pyexecute_trivial(c)
        cmd = ("RG.PYEXECUTE", TRIVIAL_SCRIPT)
        benchmark_warmup(clients, n, (srv.port, cmd))
        a1_park(c, parked)  # warm-up of the parking path
        a1_release(c, parked)
        before = commandstats(c, "rg.pyexecute")
        none_runs, parked_runs = _a1_runs(srv, c, cfg, cmd)
        _calls, failed = failed_calls(c, "rg.pyexecute", before)
        expect(failed == 0, f"A1: {failed} failed RG.PYEXECUTE calls")
        srv.check_alive("after A1")
        c.close()
    raw["a1"] = {"clients": clients, "requests": n, "parked": parked, "script": A1_SCRIPT,
                 "none_parked": none_runs, "parked_runs": parked_runs,
                 "none_rps_median": median([r["rps"] for r in none_runs]),
                 "parked_rps_median": median([r["rps"] for r in parked_runs]), "failed_calls": failed}


# ---------------------------------------------------------------------------------------------
# A2 coroutine steps


def a2(workdir, module, cfg, raw):
    n = cfg["a2_records"]
    with Server(workdir, "a2", module) as srv:
        c = srv.client()
        scripts = {"async": A2_ASYNC.format(n=n), "plain": A2_PLAIN.format(n=n)}

        def run(kind):
            expect_results(c, scripts[kind], [str(n)], f"A2 {kind}")

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
