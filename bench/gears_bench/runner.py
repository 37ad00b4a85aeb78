"""One benchmark run from the parsed command line: checks what the run needs, runs the selected
workloads (P1, P6, P2 and P4 on one main server, every other workload on servers of its own),
records each workload's failure without stopping the others, then writes and prints the
results. Returns the exit status."""

import datetime
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

from . import asyncsteps, calls, cluster, flood, parallel, registrations, scan, sync
from .common import MODES, REDIS_BENCHMARK, WORKLOADS, log
from .machine import machine_info, versions, versions_fallback
from .report import print_table, write_results
from .rows import build_rows
from .servers import REDIS_SERVER, Server, kill_children, module_path, on_signal

# The workloads that start servers of their own, in the order they run: (key, log line with
# fields of the run's configuration, function).
OWN_SERVERS = (
    ("p3", "P3 parallelism", parallel.p3),
    ("p5", "P5 footprint", calls.p5),
    ("s1", "S1 calls on behalf of the main thread", sync.s1),
    ("r1", "R1 write-through (sync registration vs Lua)", registrations.r1),
    ("r2", "R2 write-behind (async registration vs keyspace-notification subscriber)", registrations.r2),
    ("r4", "R4 PING latency during R2", registrations.r4),
    ("r3", "R3 streams (StreamReader registration vs XREADGROUP consumer)", registrations.r3),
    ("r5", "R5 the flood ({r5_sets:,} SETs vs a slow async registration)", flood.r5),
    ("a1", "A1 RG.PYEXECUTE while {a1_parked:,} executions are parked", asyncsteps.a1),
    ("a2", "A2 async def map over {a2_records:,} records", asyncsteps.a2),
    ("c1", "C1 countby over {c1_keys:,} keys on 3 masters vs 1 server", cluster.c1),
    ("c2", "C2 repartition + collect of {c2_records:,} records on 3 masters vs 1 server", cluster.c2),
    ("c3", "C3 the cluster bus vs a connection, {c3_records:,} records of 1 KB per master", cluster.c3),
)


def configure(args):
    """(mode, cfg) from the command line; cfg['workloads'] is the selection. None on an unknown
    workload (said on stderr)."""
    mode = "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    if args.keys:
        cfg["keys"] = args.keys
    if args.runs:
        cfg["runs"] = cfg["c_runs"] = args.runs
    if args.cluster_keys:
        cfg["c1_keys"] = cfg["c2_records"] = args.cluster_keys
    selected = list(WORKLOADS) if mode == "full" or args.flood else [w for w in WORKLOADS if w != "r5"]
    if args.only:
        selected = [w.strip().lower() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in selected if w not in WORKLOADS]
        if unknown:
            print(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}", file=sys.stderr)
            return None
    cfg["workloads"] = selected
    return mode, cfg


def missing_prerequisite(module):
    """What the run lacks (module file, redis-py, redis-server, redis-benchmark), or None."""
    if not os.path.exists(module):
        return f"module not found: {module} (run `make build`, or set RUSTGEARS_MODULE)"
    if importlib.util.find_spec("redis") is None:
        return "redis-py is missing: python3 -m pip install redis"
    for tool in (REDIS_SERVER, REDIS_BENCHMARK):
        if not os.path.exists(tool):
            return f"missing {tool} (apt-get install redis-server redis-tools)"
    return None


class Run:
    """What a run collects: the raw numbers of each workload and the errors, by workload."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.selected = cfg["workloads"]
        self.raw, self.errors = {}, {}

    def guarded(self, key, fn, *a):
        t0 = time.perf_counter()
        try:
            fn(*a)
        except Exception as e:  # record and carry on with the other workloads
            self.errors[key] = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=4))
            log(f"{key.upper()} FAILED: {type(e).__name__}: {str(e)[:500]}")
        self.raw.setdefault("workload_seconds", {})[key] = time.perf_counter() - t0

    def on_main_server(self, srv):
        """P1, P6, then the keyspace for P2 and P4, on the main server."""
        cfg, raw = self.cfg, self.raw
        if "p1" in self.selected:
            log("P1 per-call overhead")
            self.guarded("p1", calls.p1, srv, cfg, raw)
        if "p6" in self.selected:
            log("P6 interpreter")
            self.guarded("p6", calls.p6, srv, cfg, raw)
        expected = None
        if "p2" in self.selected or "p4" in self.selected:
            log(f"loading {cfg['keys']:,} keys")
            try:
                raw["load_seconds"], expected = scan.load_words(srv, cfg["keys"], cfg["vocabulary"])
                log(f"loaded in {raw['load_seconds']:.1f}s")
            except Exception as e:
                self.errors["load"] = f"{type(e).__name__}: {e}"
        if expected is not None and "p2" in self.selected:
            log("P2 scan throughput")
            self.guarded("p2", scan.p2, srv, cfg, raw, expected)
        if expected is not None and "p4" in self.selected:
            log("P4 latency impact")
            self.guarded("p4", scan.p4, srv, cfg, raw, expected)
        if not srv.alive():
            self.errors["main"] = f"main server died (exit {srv.proc.returncode})\n" + srv.log_tail()

    def workloads(self, workdir, module, source_module):
        """Every selected workload; returns the versions (asked of the main server)."""
        try:
            # main server: default module configuration (ExecutionThreads 3)
            main_srv = Server(workdir, "main", module)
        except Exception as e:
            self.errors["main"] = f"{type(e).__name__}: {e}"
            ver = versions_fallback(source_module)
        else:
            with main_srv:
                ver = versions(main_srv, source_module)
                self.on_main_server(main_srv)
        for key, what, fn in OWN_SERVERS:
            if key in self.selected:
                log(what.format(**self.cfg))
                self.guarded(key, fn, workdir, module, self.cfg, self.raw)
        return ver


def private_copy(source_module, workdir):
    """Every server loads one private copy: a rebuild of the module during the run (cargo
    replaces the file) must not give later workloads a different build than earlier ones."""
    module = os.path.join(workdir, os.path.basename(source_module))
    shutil.copy2(source_module, module)
    return module


def run(args):
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    configured = configure(args)
    if configured is None:
        return 2
    mode, cfg = configured
    source_module = os.path.abspath(args.module or module_path())
    problem = missing_prerequisite(source_module)
    if problem:
        print(problem, file=sys.stderr)
        return 2

    t_start = time.perf_counter()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    machine = machine_info()
    workdir = tempfile.mkdtemp(prefix="rustgears-bench-")
    module = private_copy(source_module, workdir)
    log(f"{mode} run: {cfg['keys']:,} keys, module {source_module}, scratch {workdir}")
    bench = Run(cfg)
    try:
        ver = bench.workloads(workdir, module, source_module)
    finally:
        kill_children()
        try:
            os.remove(module)  # the private copy of the module (logs stay while debugging)
        except OSError:
            pass

    machine["loadavg_end"] = os.getloadavg()
    rows = [r for r in build_rows(bench.raw, bench.errors) if r["id"].rstrip("abcd").lower() in cfg["workloads"]]
    meta = {"mode": mode, "date": date, "wall_seconds": time.perf_counter() - t_start, "machine": machine,
            "versions": ver, "params": cfg}
    write_results(args.out, meta, rows, bench.raw, bench.errors)
    print_table(args.out, meta, rows, bench.errors)
    if bench.errors:
        print(f"server logs kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0
