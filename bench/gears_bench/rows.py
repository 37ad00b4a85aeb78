"""The figures of a run: one row per figure (measured value, anchor from the same run, ratio,
target, met or not), built from the raw numbers the workloads leave in `raw`, and the number
formatting the table, the summary and the chart share."""

from .calls import FIB_N
from .common import median
from .flood import R5_MEMORY_BOUND_MB


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


def _p_rows(raw, err):
    rows = []
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
    return rows


def _s_rows(raw, err):
    rows = []
    s1 = raw.get("s1", {})
    rows.append(row("S1", "round trip of a call on behalf of the main thread (median, server side)",
                    s1.get("sync_us_median"), "us", target=20, target_on="measured", target_op="<=", error=err("s1")))
    rows.append(row("S1b", "no-op script body on behalf of the main thread (median, server side)",
                    s1.get("sync_body_us_median"), "us", "the same body as RG.PYEXECUTE (blocked time)",
                    s1.get("pyexecute_us_median"), error=err("s1")))
    return rows


def _r_rows(raw, err):
    rows = []
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
    return rows


def _a_rows(raw, err):
    rows = []
    a1 = raw.get("a1", {})
    rows.append(row("A1", "RG.PYEXECUTE '1', 50 clients, while %s executions are parked on futures"
                    % f"{a1.get('parked', 1000):,}", a1.get("parked_rps_median"), "req/s",
                    "the same with none parked", a1.get("none_rps_median"), target=0.9, error=err("a1")))
    a2 = raw.get("a2", {}).get("records_per_s", {})
    rows.append(row("A2", "async def map awaiting asyncio.sleep(0) per record, %s records"
                    % f"{raw.get('a2', {}).get('records', 100_000):,}", a2.get("async"), "rec/s",
                    "the same pipeline with a plain def", a2.get("plain"), error=err("a2")))
    return rows


def _c_rows(raw, err):
    rows = []
    c1, c2 = raw.get("c1", {}), raw.get("c2", {})
    keys = f"{c1['keys']:,}" if c1 else "N"
    rows.append(row("C1a", f"countby over {keys} keys on 3 masters", c1.get("cluster_records_per_s"), "rec/s",
                    "the same on 1 server", c1.get("single_records_per_s"), error=err("c1")))
    rows.append(row("C1b", "max PING latency on the worst master during C1a", c1.get("median", {}).get(
        "worst_master_max_ms"), "ms", "max PING latency on the 1 server during its countby",
        c1.get("single_ping_max_ms_median"), error=err("c1")))
    rows.append(row("C1c", "nodes marked PFAIL/FAIL during C1a (cluster-node-timeout 5000)", c1.get("marks_total"),
                    "", target=0, target_on="measured", target_op="<=", error=err("c1")))
    records = f"{c2['records']:,}" if c2 else "N"
    rows.append(row("C2a", f"repartition + collect of {records} records on 3 masters", c2.get("cluster_records_per_s"),
                    "rec/s", "the same script on 1 server (nothing moves)", c2.get("single_records_per_s"),
                    error=err("c2")))
    rows.append(row("C2b", "peak RSS of the largest master during C2a", c2.get("max_master_peak_rss_mb"), "MB",
                    "peak RSS of the 1 server during its run", c2.get("single_peak_rss_mb"), error=err("c2"),
                    note=None if not c2 else "peak RSS per master: " + ", ".join(
                        f"{addr} {mb:.0f} MB" for addr, mb in c2["master_peak_rss_mb"].items())))
    c3 = raw.get("c3", {})
    rows.append(row("C3", "1 KB records collected over the cluster bus", c3.get("bus_mb_per_s"), "MB/s",
                    "the same bytes as pipelined SETs over one connection", c3.get("connection_mb_per_s"),
                    error=err("c3")))
    return rows


def build_rows(raw, errors):
    """Every figure, in table order; a workload that failed has its error in its rows."""
    return [r for group in (_p_rows, _s_rows, _r_rows, _a_rows, _c_rows) for r in group(raw, errors.get)]
