"""P3 parallelism: CPU-bound jobs sent at once by several clients, on a server with
ExecutionThreads 1 and one with ExecutionThreads 2, with the workers' CPU time and run-queue
wait from /proc (so that a worker waiting for a lock is told from one waiting for a CPU)."""

import os
import threading
import time

from .common import CMD_TIMEOUT, ValidationError, as_str, log, median, pyexecute, timed
from .servers import Server

CPU_SCRIPT = "GB('ShardsIDReader').map(lambda r: sum(i*i for i in range({n}))).run()"


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
    """`clients_n` clients send `script` at once (a barrier); returns the wall time until the
    last one has its (checked) result. With `diag`, appends the workers' schedstat delta."""
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


def calibrate(s1, target_s):
    """The loop size that makes one job take about `target_s` on one worker; returns
    (loop size, the probe's seconds, two single-job timings at that size)."""
    c = s1.client()
    probe_n = 300_000
    pyexecute(c, CPU_SCRIPT.format(n=1000))
    t = min(timed(pyexecute, c, CPU_SCRIPT.format(n=probe_n))[0] for _ in range(3))
    n = int(min(50_000_000, max(50_000, probe_n * target_s / max(t, 1e-3))))
    n = int(round(n, -4))
    single = [timed(pyexecute, c, CPU_SCRIPT.format(n=n))[0] for _ in range(2)]
    c.close()
    return n, t, single


def _log_run(i, k, walls, sched):
    log(f"P3 run {i + 1}: {k} jobs on ExecutionThreads 1: {walls['et1'][-1]:.2f}s, "
        f"on ExecutionThreads 2: {walls['et2'][-1]:.2f}s" + (
            " (workers' CPU %.2fs, waiting for a CPU %.2fs)" % (
                sched["et2"][-1]["workers_cpu_s"], sched["et2"][-1]["workers_runqueue_wait_s"])
            if len(sched["et2"]) == i + 1 else ""))


def p3(workdir, module, cfg, raw):
    with Server(workdir, "p3-et1", module, ["ExecutionThreads", 1]) as s1, \
            Server(workdir, "p3-et2", module, ["ExecutionThreads", 2]) as s2:
        n, t, single = calibrate(s1, cfg["p3_target_s"])
        script = CPU_SCRIPT.format(n=n)
        expected = sum(i * i for i in range(n))
        k = cfg["p3_clients"]
        for s in (s1, s2):  # warm-up: every worker compiles the script
            concurrent_run(s, k, script, expected)
        walls = {"et1": [], "et2": []}
        sched = {"et1": [], "et2": []}
        for i in range(cfg["runs"]):
            walls["et1"].append(concurrent_run(s1, k, script, expected, sched["et1"]))
            walls["et2"].append(concurrent_run(s2, k, script, expected, sched["et2"]))
            _log_run(i, k, walls, sched)
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
