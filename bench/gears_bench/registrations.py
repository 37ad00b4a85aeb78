"""R1-R4 registrations: work triggered by events (keyspace events, XADD) against the same work
done without the module (a Lua wrapper, a client subscribed to keyspace notifications, a
client-side stream consumer), each anchor on a plain redis-server: R1 write-through (sync
registration vs Lua), R2 write-behind (async registration vs subscriber), R3 streams
(StreamReader vs XREADGROUP), R4 PING latency during R2. R5, the flood, is in flood.py."""

import time

from .common import as_str, benchmark_pair, benchmark_warmup, commandstats, expect, log, median, register
from .events import R_WRITERS, Writers, watch
from .pinger import pinged, window_ms, with_pinger
from .servers import Child, Server

R1_SCRIPT = ("GB().foreach(lambda x: execute('XADD', 'audit', '*', 'k', x['key']))"
             ".register(prefix='key:*', mode='sync', eventTypes=['set'], readValue=False)")
R1_LUA = "redis.call('SET', KEYS[1], ARGV[1]) redis.call('XADD', 'audit', '*', 'k', KEYS[1])"
R2_SCRIPT = ("GB().foreach(lambda x: execute('HSET', 'mirror', x['key'], x['value']))"
             ".register(prefix='wb:*', eventTypes=['set'])")
R3_SCRIPT = ("GB('StreamReader').foreach(lambda x: execute('INCRBY', 'counter', 1))"
             ".register(prefix='s', batch=100, duration=100)")


# ---------------------------------------------------------------------------------------------
# a registration's own statistics


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


def checked_registration(srv, what, triggered=None):
    """check_registration() on a new connection to `srv`."""
    c = srv.client()
    stats = check_registration(c, what, triggered)
    c.close()
    return stats


# ---------------------------------------------------------------------------------------------
# R1 write-through


def r1(workdir, module, cfg, raw):
    n, clients = cfg["r1_requests"], cfg["r1_clients"]
    with Server(workdir, "r1-reg", module) as reg, Server(workdir, "r1-lua") as lua:
        cr, cl = reg.client(), lua.client()
        register(cr, R1_SCRIPT)
        rg = (reg.port, ("-r", "100000", "SET", "key:__rand_int__", "v"))
        anchor = (lua.port, ("-r", "100000", "EVAL", R1_LUA, "1", "key:__rand_int__", "v"))
        # correctness first: redis-benchmark counts error replies as requests
        expect(cr.set("key:probe", "v") and cr.xlen("audit") == 1,
               f"SET with the sync registration: XLEN audit is {cr.xlen('audit')}, expected 1")
        cl.execute_command("EVAL", R1_LUA, "1", "key:probe", "v")
        expect(cl.xlen("audit") == 1, f"Lua wrapper: XLEN audit is {cl.xlen('audit')}, expected 1")
        benchmark_warmup(clients, n, rg, anchor)
        rg_runs, lua_runs = benchmark_pair(
            clients, n, cfg["r1_runs"], rg, anchor,
            lambda i, a, b: f"R1 run {i + 1}: SET + sync registration {a['rps']:.0f} ops/s, "
                            f"Lua wrapper {b['rps']:.0f} ops/s")
        sets = 1 + max(1000, n // 10) + n * cfg["r1_runs"]
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


# ---------------------------------------------------------------------------------------------
# R2 write-behind and R4 (PING latency during R2)


def _mirror_run(srv, n, run, ping, sub):
    """Writers SET wb:0..n-1 to r<run>v<i>; the run lasts until HLEN mirror reaches n (or the
    mirroring stalls). `sub` is the anchor's subscriber process, None for the registration."""
    c = srv.client()
    c.delete("mirror")
    w = Writers(srv.port, "set", n, R_WRITERS, "wb:", f"r{run}v{{i}}")
    res = pinged(srv, lambda: watch(lambda: c.hlen("mirror"), n, w), ping)
    st = None
    if sub is not None:
        sub.send("stop")
        st = sub.result()
    got = c.hgetall("mirror")
    c.close()
    secs = res["t_done"] - res["writers"]["t_first"]
    rec = {"events": n, "seconds": secs, "events_per_s": res["value"] / secs, "lost": n - res["value"],
           # a key the subscriber never mirrored is lost (counted above), not wrong
           "wrong": sum(1 for i in range(n) if _wrong(got.get(f"wb:{i}".encode()), f"r{run}v{i}", sub))}
    if st is not None:
        rec.update(disconnects=st["disconnects"], processed=st["processed"])
    rec["writers_seconds"] = res["writers"]["t_last"] - res["writers"]["t_first"]
    return rec


def _wrong(got, want, sub):
    return got != want.encode() and (got is not None or sub is None)


def r2_ours(srv, n, run, ping=None):
    """One R2 run of the registration; with ping={} the run happens under the pinger (R4), its
    window starting once the writers are ready."""
    return _mirror_run(srv, n, run, ping, None)


def r2_subscriber(srv, n, run, style="per-event", ping=None):
    """One R2 run of the anchor: a subscriber process of `style` does the mirroring."""
    with Child("--_subscriber", f"{srv.port}:{style}") as sub:
        sub.wait_ready()
        return _mirror_run(srv, n, run, ping, sub)


def r2_servers(workdir, module, tag):
    """The registration's server and the anchor's (keyspace notifications on)."""
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


def _r2_log(i, rg, sub, bat):
    log(f"R2 run {i + 1}: async registration {rg['events_per_s']:.0f} events/s "
        f"({rg['lost']} lost), subscriber {sub['events_per_s']:.0f} events/s "
        f"({sub['lost']} lost, {sub['disconnects']} disconnects), batched subscriber "
        f"{bat['events_per_s']:.0f} events/s ({bat['lost']} lost, {bat['disconnects']} disconnects)")


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
            _r2_log(i, rg[-1], sub[-1], bat[-1])
        ours.check_alive("after R2")
        stats = checked_registration(ours, "R2", triggered=1000 + n * cfg["r2_runs"])
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


def _r4_run(run_r2, srv, n, i):
    """One R2 run (ours or the anchor's) under the pinger: {r2: the run, job_s, window, ...}."""
    ping = {}
    out = run_r2(srv, n, i + 1, ping=ping)
    return {"r2": out, **ping["ping"]}


def r4(workdir, module, cfg, raw):
    n = cfg["r2_events"]
    ours, anchor = r2_servers(workdir, module, "r4")
    with ours, anchor:
        r2_ours(ours, 1000, 0)
        _idle_s, idle = with_pinger(ours, lambda: time.sleep(1.0))
        rg, sub = [], []
        for i in range(cfg["r4_runs"]):
            rg.append(_r4_run(r2_ours, ours, n, i))
            sub.append(_r4_run(r2_subscriber, anchor, n, i))
            log("R4 run %d: PING p99/max during the registration's R2 %.2f/%.2f ms (%d pings), "
                "during the subscriber's %.2f/%.2f ms (%d pings)"
                % (i + 1, window_ms(rg[-1], "p99_ms"), window_ms(rg[-1], "max_ms"), rg[-1]["window"]["count"],
                   window_ms(sub[-1], "p99_ms"), window_ms(sub[-1], "max_ms"), sub[-1]["window"]["count"]))
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


# ---------------------------------------------------------------------------------------------
# R3 streams


def r3_run(srv, n, consumer=False):
    """n XADDs to stream s; the run lasts until `counter` reaches n, counted by the
    registration, or with `consumer` by the anchor's consumer process."""
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
