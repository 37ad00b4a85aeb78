"""P1 per-call overhead (redis-benchmark of RG.PYEXECUTE against EVAL), P5 footprint (MODULE
LOAD time, RSS per worker interpreter) and P6 interpreter speed (RustPython inside the module
against CPython)."""

import json
import shutil
import subprocess
import sys
import time

from .common import (SUBPROC_TIMEOUT, TRIVIAL_SCRIPT, benchmark_pair, benchmark_warmup, commandstats,
                     expect, expect_results, failed_calls, log, median, pyexecute, pyexecute_trivial, timed)
from .servers import Server

LUA_TRIVIAL = "return 1"
FIB_DEF = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
FIB_N = 25
FIB_SCRIPT = FIB_DEF + "GB('ShardsIDReader').map(lambda r: fib(%d)).run()" % FIB_N
FIB_BASELINE_SCRIPT = FIB_DEF + "GB('ShardsIDReader').map(lambda r: 0).run()"


# ---------------------------------------------------------------------------------------------
# P1 per-call overhead (redis-benchmark)


def p1(server, cfg, raw):
    c = server.client()
    # correctness first: redis-benchmark counts error replies as requests
    pyexecute_trivial(c)
    got = c.execute_command("EVAL", LUA_TRIVIAL, 0)
    expect(got == 1, f"EVAL {LUA_TRIVIAL!r} 0: expected 1, got {got!r}")
    clients, n = cfg["p1_clients"], cfg["p1_requests"]
    rg = (server.port, ("RG.PYEXECUTE", TRIVIAL_SCRIPT))
    lua = (server.port, ("EVAL", LUA_TRIVIAL, "0"))
    benchmark_warmup(clients, n, rg, lua)
    before = commandstats(c, "rg.pyexecute")
    rg_runs, lua_runs = benchmark_pair(
        clients, n, cfg["p1_runs"], rg, lua,
        lambda i, a, b: f"P1 run {i + 1}: RG.PYEXECUTE {a['rps']:.0f} rps, EVAL {b['rps']:.0f} rps")
    calls, failed = failed_calls(c, "rg.pyexecute", before)
    expect(failed == 0, f"RG.PYEXECUTE {TRIVIAL_SCRIPT!r} under redis-benchmark: {failed} failed calls")
    expect(calls >= n * cfg["p1_runs"], f"RG.PYEXECUTE calls {calls} < {n * cfg['p1_runs']} requested")
    server.check_alive("after P1")
    c.close()
    raw["p1"] = {"clients": clients, "requests": n, "rustgears": rg_runs, "lua": lua_runs,
                 "rustgears_rps_median": median([r["rps"] for r in rg_runs]),
                 "lua_rps_median": median([r["rps"] for r in lua_runs]),
                 "commandstats_calls": calls, "commandstats_failed": failed}


# ---------------------------------------------------------------------------------------------
# P5 footprint


def _p5_load(workdir, module, i):
    """One MODULE LOAD into a running server without the module, and the first call after it."""
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
        rec = {"module_load_s": secs, "first_exec_s": first, "ping_s": rtt,
               "rss_before_kb": rss0, "rss_after_kb": s.rss_kb()}
        c.close()
        s.check_alive("after MODULE LOAD")
    return rec


def _p5_rss(workdir, module, i):
    """RSS of a server without the module, and with it on 1 and on 5 execution threads."""
    rec = {}
    with Server(workdir, f"p5-none{i}") as s:
        c = s.client()
        c.ping()
        rec["none_kb"] = s.rss_kb()
        c.close()
    for threads in (1, 5):
        with Server(workdir, f"p5-et{threads}-{i}", module, ["ExecutionThreads", threads]) as s:
            c = s.client()
            pyexecute_trivial(c)
            time.sleep(0.2)
            rec[f"et{threads}_kb"] = s.rss_kb()
            rec[f"et{threads}_ready_s"] = s.ready_after
            c.close()
    rec["per_vm_mb"] = (rec["et5_kb"] - rec["et1_kb"]) / 4 / 1024
    log(f"P5 run {i + 1}: RSS no module {rec['none_kb'] / 1024:.1f} MB, ET1 {rec['et1_kb'] / 1024:.1f} MB, "
        f"ET5 {rec['et5_kb'] / 1024:.1f} MB -> {rec['per_vm_mb']:.2f} MB per VM")
    return rec


def p5(workdir, module, cfg, raw):
    loads = [_p5_load(workdir, module, i) for i in range(cfg["p5_runs"])]
    rss = [_p5_rss(workdir, module, i) for i in range(cfg["p5_runs"])]
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


def _cpython_fib(runs):
    """fib(FIB_N) timed `runs` times by a CPython process; returns its JSON and its path."""
    py = shutil.which("python3") or sys.executable
    out = subprocess.run([py, "-c", CPYTHON_FIB, str(runs)], capture_output=True, text=True,
                         timeout=SUBPROC_TIMEOUT)
    if out.returncode != 0:
        raise RuntimeError(f"CPython fib failed: {out.stderr[-500:]}")
    return json.loads(out.stdout), py


def p6(server, cfg, raw):
    c = server.client()
    want = fib(FIB_N)
    expect_results(c, FIB_SCRIPT, [str(want)], f"fib({FIB_N}) in RustPython")
    pyexecute(c, FIB_BASELINE_SCRIPT)
    fib_s, base_s = [], []
    for _ in range(cfg["p6_runs"]):
        base_s.append(timed(pyexecute, c, FIB_BASELINE_SCRIPT)[0])
        fib_s.append(timed(pyexecute, c, FIB_SCRIPT)[0])
    c.close()
    cp, py = _cpython_fib(max(5, cfg["p6_runs"]))
    expect(cp["value"] == want, f"CPython fib({FIB_N}) = {cp['value']}")
    rust = max(median(fib_s) - median(base_s), 1e-9)
    raw["p6"] = {"fib_n": FIB_N, "rustpython_fib_run_s": fib_s, "rustpython_baseline_run_s": base_s,
                 "rustpython_fib_s": rust, "cpython_fib_s_runs": cp["seconds"],
                 "cpython_fib_s": median(cp["seconds"]),
                 "cpython": f"CPython {cp['version']}", "cpython_path": py,
                 "cpython_implementation": cp["implementation"]}
    log(f"P6: fib({FIB_N}) RustPython {rust * 1e3:.1f} ms, CPython {raw['p6']['cpython_fib_s'] * 1e3:.1f} ms")
