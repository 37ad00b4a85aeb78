"""R5 the flood: far more SETs than a slow async registration can keep up with. Memory
(used_memory and RSS, sampled during the flood) must stay within a bound over the baseline, and
every event must be processed exactly once."""

import threading
import time

from .common import as_str, expect, log, register
from .events import R_PIPELINE, R_WRITERS, Writers, watch
from .registrations import check_registration
from .servers import Server

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


def used_memory(c):
    return int(c.info("memory")["used_memory"])


class MemorySampler:
    """A thread sampling (time, used_memory, RSS in bytes) of a server every 0.2 s."""

    def __init__(self, srv):
        self.srv = srv
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        sc = self.srv.client()
        while not self.stop.is_set():
            try:
                self.samples.append((time.perf_counter(), used_memory(sc), self.srv.rss_kb() * 1024))
            except Exception:  # a sample missed while the server is busy is no error
                pass
            self.stop.wait(0.2)
        sc.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def _warm_up(c):
    """One event through the registration, then a clean state and a settled baseline."""
    c.set("f:-1", 1)
    deadline = time.monotonic() + 30
    while int(c.get("processed") or 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    c.delete("processed", "f:-1")
    time.sleep(0.5)


def _flood(srv, c, n):
    """The flood itself; returns the figures of raw['r5'] that it measures."""
    base_mem, base_rss = used_memory(c), srv.rss_kb() * 1024
    with MemorySampler(srv) as sampler:
        w = Writers(srv.port, "set", n, R_WRITERS, "f:", "1")
        res = watch(lambda: int(c.get("processed") or 0), n, w, deadline_s=1800, stall_s=60, poll=0.05)
    time.sleep(1.0)  # nothing may arrive late: each event exactly once
    processed = int(c.get("processed") or 0)
    sample = {as_str(k): int(v) for k, v in c.hgetall("sample").items()}
    end_mem, end_rss = used_memory(c), srv.rss_kb() * 1024
    samples = sampler.samples
    wr = res["writers"]
    max_mem = max([s[1] for s in samples] + [end_mem])
    max_rss = max([s[2] for s in samples] + [end_rss])
    return sample, {
        "processed": processed, "writers_seconds": wr["t_last"] - wr["t_first"],
        "seconds": res["t_done"] - wr["t_first"],
        "sets_per_s": n / (wr["t_last"] - wr["t_first"]),
        "events_per_s": processed / (res["t_done"] - wr["t_first"]),
        "baseline_used_memory": base_mem, "baseline_rss": base_rss,
        "max_used_memory": max_mem, "max_rss": max_rss, "end_used_memory": end_mem, "end_rss": end_rss,
        "max_used_memory_growth_mb": (max_mem - base_mem) / 2 ** 20,
        "max_rss_growth_mb": (max_rss - base_rss) / 2 ** 20,
        "bound_mb": R5_MEMORY_BOUND_MB, "samples": len(samples)}


def _check(r, n, sample):
    expect(r["processed"] == n, f"R5: processed is {r['processed']} after {n} SETs (every event exactly once)")
    want = {f"f:{i}" for i in range(0, n, 1000)}
    bad = {k: v for k, v in sample.items() if v != 1}
    expect(set(sample) == want and not bad,
           f"R5: sampled keys: {len(want - set(sample))} never processed, {len(set(sample) - want)} unexpected, "
           f"{len(bad)} processed more than once (e.g. {list(bad.items())[:3]})")
    expect(r["max_used_memory_growth_mb"] <= R5_MEMORY_BOUND_MB,
           f"R5: used_memory grew by {r['max_used_memory_growth_mb']:.0f} MB (bound {R5_MEMORY_BOUND_MB} MB)")
    expect(r["max_rss_growth_mb"] <= R5_MEMORY_BOUND_MB,
           f"R5: RSS grew by {r['max_rss_growth_mb']:.0f} MB (bound {R5_MEMORY_BOUND_MB} MB)")


def r5(workdir, module, cfg, raw):
    n = cfg["r5_sets"]
    with Server(workdir, "r5", module) as srv:
        c = srv.client()
        register(c, R5_SCRIPT)
        pending_bound = c.execute_command("RG.CONFIGGET", "MaxPendingEventsPerRegistration")
        _warm_up(c)
        sample, figures = _flood(srv, c, n)
        dbsize = c.dbsize()
        srv.check_alive("after R5")
        stats = check_registration(c, "R5")
        c.close()
    processed = figures.pop("processed")
    r = raw["r5"] = {"sets": n, "script": R5_SCRIPT, "writers": R_WRITERS, "pipeline": R_PIPELINE,
                     "max_pending_events_per_registration": str(pending_bound),
                     "processed": processed, "dbsize": dbsize, "registration": stats, **figures}
    log("R5: %d SETs in %.1f s (%.0f/s); all processed after %.1f s (%.0f events/s); used_memory max +%.1f MB, "
        "RSS max +%.1f MB (bound +%d MB)" % (n, r["writers_seconds"], r["sets_per_s"], r["seconds"],
                                             r["events_per_s"], r["max_used_memory_growth_mb"],
                                             r["max_rss_growth_mb"], R5_MEMORY_BOUND_MB))
    _check(r, n, sample)
