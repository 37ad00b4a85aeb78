"""C1-C2 cluster mode: a local Redis Cluster of 3 masters (no replicas, cluster-node-timeout
5000, tests/cluster.py) against one server, both with the module in its default configuration and
the same keys as P2 (key:0..key:N-1, a word each).

C1: `GB().countby(lambda r: r['value']).run()` over the keys: wall time on the cluster against
the single server; meanwhile a thread per master PINGs it every few ms (the main thread's latency
while the execution runs on every master), and a watcher reads CLUSTER NODES on every master to
see whether any node was marked PFAIL or FAIL.

C2: repartition + collect of every record (`GB().repartition(...).collect().count().run()`):
records/s on the cluster against the single server (where both steps move nothing), and the peak
RSS of each master while it runs (sampled from /proc, with VmHWM after).

C3: the cluster bus against a connection: MB/s of 1 KB records collected at the first master from
the others (frames, credit window and acknowledgements included; the same execution kept local is
subtracted), against the same bytes sent to a master as pipelined SETs over one Redis connection,
what a module opening connections to its peers would ride.

Data are loaded fast: pipelined SETs over a raw socket, each key straight to the master that
owns its slot (`DEBUG POPULATE` does not respect slots in cluster mode, and MSET refuses keys of
different slots)."""

import contextlib
import socket
import threading
import time

from .common import CMD_TIMEOUT, HOST, expect, expect_results, log, median, timed
from .pinger import _latency_stats, _Pings
from .scan import COUNTBY_SCRIPT, rg_countby, word_values
from .servers import Server, harness

import cluster as local_cluster  # noqa: E402,I001  tests/cluster.py (servers.py puts tests/ on sys.path)

NODE_TIMEOUT_MS = 5000
MASTERS = 3
PING_INTERVAL_S = 0.002
WATCH_INTERVAL_S = 0.25
RSS_INTERVAL_S = 0.1
LOAD_CHUNK = 10_000
# Every record moves to the shard of its word, then to the initiator, which counts them.
C2_SCRIPT = "GB().repartition(lambda r: r['value']).collect().count().run()"


# ---------------------------------------------------------------------------------------------
# servers and data


@contextlib.contextmanager
def bench_cluster(module):
    """A started 3-master cluster whose masters have read the topology (RG.REFRESHCLUSTER);
    stopped at the end, its directories kept (and said) when the workload failed."""
    c = local_cluster.Cluster(masters=MASTERS, replicas=0, module=module, node_timeout=NODE_TIMEOUT_MS)
    try:
        c.start()
    except (local_cluster.ClusterError, harness.ServerStartError) as e:
        raise RuntimeError(f"cluster did not start: {e}") from None
    ok = False
    try:
        for m in c.masters:
            expect(m.call("RG.REFRESHCLUSTER") == "OK", f"RG.REFRESHCLUSTER on {m.addr}")
        yield c
        ok = True
    finally:
        c.stop(keep_dirs=not ok)
        if not ok and c.root:
            log(f"cluster node logs kept in {c.root}")


def _set_command(key, value):
    k, v = key.encode(), value.encode()
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v)


def pipe_sets(port, pairs):
    """SETs of (key, value) pairs over one raw socket, LOAD_CHUNK commands per write; every reply
    must be +OK."""
    with socket.create_connection((HOST, port), timeout=CMD_TIMEOUT) as s:
        f = s.makefile("rb")
        for start in range(0, len(pairs), LOAD_CHUNK):
            part = pairs[start:start + LOAD_CHUNK]
            s.sendall(b"".join(_set_command(k, v) for k, v in part))
            got = f.read(5 * len(part))
            expect(got == b"+OK\r\n" * len(part), f"loading port {port}: unexpected reply {got[:200]!r}")


def slot_table(masters):
    """The master of every hash slot, as a list indexed by slot."""
    table = [None] * local_cluster.HASH_SLOTS
    for m in masters:
        for first, last in m.slots:
            for slot in range(first, last + 1):
                table[slot] = m
    expect(None not in table, "a hash slot has no master")
    return table


def by_owner(masters, pairs):
    """{master: its (key, value) pairs}."""
    from redis.crc import key_slot

    table = slot_table(masters)
    out = {m: [] for m in masters}
    for key, value in pairs:
        out[table[key_slot(key.encode())]].append((key, value))
    return out


def load(single, cl, n_keys, vocab_size):
    """The same words on the single server and on the cluster; returns (expected Counter,
    {'single_s', 'cluster_s'} load times)."""
    values, expected = word_values(n_keys, vocab_size)
    pairs = [(f"key:{i}", v) for i, v in enumerate(values)]
    single_s = timed(pipe_sets, single.port, pairs)[0]
    t0 = time.perf_counter()
    for m, own in by_owner(cl.masters, pairs).items():
        pipe_sets(m.port, own)
    cluster_s = time.perf_counter() - t0
    expect(single.client().dbsize() == n_keys, f"single server holds {single.client().dbsize()} keys, not {n_keys}")
    sizes = [m.call("DBSIZE") for m in cl.masters]
    expect(sum(sizes) == n_keys and min(sizes) > 0, f"the masters hold {sizes} keys, not {n_keys} in all")
    log(f"loaded {n_keys:,} keys: single server {single_s:.1f}s, cluster {cluster_s:.1f}s ({sizes})")
    return expected, {"single_s": single_s, "cluster_s": cluster_s}


# ---------------------------------------------------------------------------------------------
# probes: threads of the harness, started around one job


class _Probe:
    """A daemon thread calling self.sample() every `interval` s until the with block ends."""

    interval = 0.1

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.failure = None

    def _run(self):
        try:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)
        except Exception as e:  # reported by the workload, not lost in the thread
            self.failure = f"{type(self).__name__}: {type(e).__name__}: {e}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=CMD_TIMEOUT)
        expect(self.failure is None, str(self.failure))


class PingProbe(_Probe):
    """PINGs one server every PING_INTERVAL_S over a raw socket: what a client waits on that
    server's main thread while the job runs."""

    interval = PING_INTERVAL_S

    def __init__(self, port):
        super().__init__()
        self.pings = _Pings(port)

    def sample(self):
        self.pings.one()

    def stats(self):
        self.pings.s.close()
        return {**_latency_stats(sorted(self.pings.lat)), "errors": self.pings.errors}


class NodeWatcher(_Probe):
    """Reads CLUSTER NODES on every master every WATCH_INTERVAL_S; keeps every (observer, node,
    flag) seen with a PFAIL (`fail?`) or FAIL flag."""

    interval = WATCH_INTERVAL_S

    def __init__(self, masters):
        super().__init__()
        self.masters = masters
        self.marked = set()
        self.reads = 0

    def sample(self):
        for m in self.masters:
            for e in local_cluster.parse_cluster_nodes(m.call("CLUSTER", "NODES", timeout=CMD_TIMEOUT).decode()):
                for flag in e["flags"] & {"fail?", "fail"}:
                    self.marked.add((m.addr, e["addr"], flag))
            self.reads += 1


class RssSampler(_Probe):
    """Samples VmRSS of processes every RSS_INTERVAL_S; keeps each one's maximum (kB)."""

    interval = RSS_INTERVAL_S

    def __init__(self, pids):
        super().__init__()
        self.peak = {pid: harness.rss_kb(pid) for pid in pids}
        self.baseline = dict(self.peak)

    def sample(self):
        for pid in self.peak:
            self.peak[pid] = max(self.peak[pid], harness.rss_kb(pid))


def hwm_kb(pid):
    """The peak resident memory of a process since it started (VmHWM), in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"VmHWM not found for pid {pid}")


def pinged_job(ports, job, masters=None):
    """Runs job() while a PingProbe PINGs each port (and a NodeWatcher watches `masters`, until 1 s
    after the job); returns (job seconds, {port: ping stats}, sorted PFAIL/FAIL marks or None)."""
    probes = [PingProbe(p) for p in ports]
    watcher = NodeWatcher(masters) if masters else contextlib.nullcontext()
    with watcher:
        with contextlib.ExitStack() as stack:
            for p in probes:
                stack.enter_context(p)
            secs = timed(job)[0]
        if masters:
            time.sleep(1.0)  # a node the others stopped hearing from is marked a little later
    stats = {port: p.stats() for port, p in zip(ports, probes)}
    return secs, stats, sorted(watcher.marked) if masters else None


# ---------------------------------------------------------------------------------------------
# C1 countby on 3 masters against 1 server


def _c1_run(i, single, cl, expected):
    """One interleaved run: the single server, then the cluster (initiator: the first master)."""
    sc, cc = single.client(), cl.masters[0].client(decode=False)
    s_secs, s_ping, _ = pinged_job([single.port], lambda: rg_countby(sc, expected))
    c_secs, c_ping, marked = pinged_job([m.port for m in cl.masters], lambda: rg_countby(cc, expected), cl.masters)
    sc.close()
    cc.close()
    worst = max(st.get("max_ms", 0.0) for st in c_ping.values())
    log(f"C1 run {i + 1}: countby on 1 server {s_secs:.2f}s, on {MASTERS} masters {c_secs:.2f}s; max PING "
        f"{s_ping[single.port].get('max_ms', float('nan')):.2f} ms on the server, {worst:.2f} ms on the worst master; "
        f"PFAIL/FAIL marks {len(marked)}")
    return {"single_s": s_secs, "cluster_s": c_secs, "single_ping": s_ping[single.port],
            "master_ping": {str(p): st for p, st in c_ping.items()}, "worst_master_max_ms": worst,
            "marks": [list(m) for m in marked]}


def c1(workdir, module, cfg, raw):
    n = cfg["c1_keys"]
    with Server(workdir, "c1-single", module) as single, bench_cluster(module) as cl:
        expected, loaded = load(single, cl, n, cfg["vocabulary"])
        rg_countby(single.client(), expected)  # warm-up, and both answers checked
        rg_countby(cl.masters[0].client(decode=False), expected)
        runs = [_c1_run(i, single, cl, expected) for i in range(cfg["c_runs"])]
        single.check_alive("after C1")
        expect(all(m.alive() for m in cl.nodes), f"a cluster node died during C1: {cl.problems()}")
    med = {k: median([r[k] for r in runs]) for k in ("single_s", "cluster_s", "worst_master_max_ms")}
    raw["c1"] = {"keys": n, "masters": MASTERS, "node_timeout_ms": NODE_TIMEOUT_MS, "script": COUNTBY_SCRIPT,
                 "load_seconds": loaded, "runs": runs, "median": med,
                 "single_records_per_s": n / med["single_s"], "cluster_records_per_s": n / med["cluster_s"],
                 "single_ping_max_ms_median": median([r["single_ping"].get("max_ms", 0.0) for r in runs]),
                 "marks_total": sum(len(r["marks"]) for r in runs)}


# ---------------------------------------------------------------------------------------------
# C2 repartition + collect


def _c2_job(client, n, what):
    return lambda: expect_results(client, C2_SCRIPT, [str(n)], what)


def _c2_run(i, single, cl, n):
    """One interleaved run with RSS sampling of every process involved."""
    sc, cc = single.client(), cl.masters[0].client(decode=False)
    with RssSampler([single.pid]) as s_rss:
        s_secs = timed(_c2_job(sc, n, "C2 on 1 server"))[0]
    with RssSampler([m.pid for m in cl.masters]) as c_rss:
        c_secs = timed(_c2_job(cc, n, f"C2 on {MASTERS} masters"))[0]
    sc.close()
    cc.close()
    masters = {m.addr: {"baseline_kb": c_rss.baseline[m.pid], "peak_kb": c_rss.peak[m.pid], "hwm_kb": hwm_kb(m.pid)}
               for m in cl.masters}
    log(f"C2 run {i + 1}: {n:,} records repartitioned and collected on 1 server in {s_secs:.2f}s, on {MASTERS} "
        f"masters in {c_secs:.2f}s; peak RSS per master " + ", ".join(
            f"{v['peak_kb'] / 1024:.0f} MB" for v in masters.values()))
    return {"single_s": s_secs, "cluster_s": c_secs, "masters": masters,
            "single_rss": {"baseline_kb": s_rss.baseline[single.pid], "peak_kb": s_rss.peak[single.pid]}}


def c2(workdir, module, cfg, raw):
    n = cfg["c2_records"]
    with Server(workdir, "c2-single", module) as single, bench_cluster(module) as cl:
        _expected, loaded = load(single, cl, n, cfg["vocabulary"])
        _c2_job(single.client(), n, "C2 warm-up on 1 server")()
        _c2_job(cl.masters[0].client(decode=False), n, f"C2 warm-up on {MASTERS} masters")()
        runs = [_c2_run(i, single, cl, n) for i in range(cfg["c_runs"])]
        single.check_alive("after C2")
        expect(all(m.alive() for m in cl.nodes), f"a cluster node died during C2: {cl.problems()}")
    med = {k: median([r[k] for r in runs]) for k in ("single_s", "cluster_s")}
    peaks = {addr: max(r["masters"][addr]["peak_kb"] for r in runs) for addr in runs[0]["masters"]}
    raw["c2"] = {"records": n, "masters": MASTERS, "script": C2_SCRIPT, "load_seconds": loaded, "runs": runs,
                 "median": med, "single_records_per_s": n / med["single_s"],
                 "cluster_records_per_s": n / med["cluster_s"],
                 "master_peak_rss_mb": {a: kb / 1024 for a, kb in peaks.items()},
                 "max_master_peak_rss_mb": max(peaks.values()) / 1024,
                 "single_peak_rss_mb": max(r["single_rss"]["peak_kb"] for r in runs) / 1024}


# ---------------------------------------------------------------------------------------------
# C3 the cluster bus against a connection


def _c3_bus(client, per_master, size):
    """Seconds to collect `per_master` records of `size` bytes from each of the other masters
    at the first (bus, frames and acknowledgements), less the same execution kept local."""
    make = f"GB('ShardsIDReader').flatmap(lambda x: [b'x' * {size}] * {per_master}).collect().count()"
    want = [str(MASTERS * per_master)]
    crossing = timed(lambda: expect_results(client, f"{make}.run()", want, "C3 over the bus"))[0]
    staying = timed(lambda: expect_results(client, f"{make}.run(mode='async_local')", [str(per_master)],
                                            "C3 kept local"))[0]
    return max(crossing - staying, 1e-6)


def _c3_connection(cl, node, n, size):
    """Seconds to send `n` values of `size` bytes to `node` as pipelined SETs over one Redis
    connection, as a module opening connections to its peers would."""
    c = node.client(decode=False)
    tag = next(t for t in (f"c3{i}" for i in range(100_000)) if cl.owner("{%s}" % t) is node)
    payload = b"x" * size
    t0 = time.perf_counter()
    pipe = c.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"{{{tag}}}{i}", payload)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    secs = time.perf_counter() - t0
    c.close()
    return secs


def c3(workdir, module, cfg, raw):
    per_master, size = cfg["c3_records"], 1000
    moved_mb = (MASTERS - 1) * per_master * size / 1e6
    with bench_cluster(module) as cl:
        client = cl.masters[0].client(decode=False)
        _c3_bus(client, per_master, size)  # warm-up
        bus = [_c3_bus(client, per_master, size) for _ in range(cfg["c_runs"])]
        conn = [_c3_connection(cl, cl.masters[1], (MASTERS - 1) * per_master, size) for _ in range(cfg["c_runs"])]
        client.close()
        expect(all(m.alive() for m in cl.nodes), f"a cluster node died during C3: {cl.problems()}")
    log(f"C3: {moved_mb:.0f} MB of {size} B records over the bus in {median(bus):.2f}s, "
        f"as pipelined SETs over one connection in {median(conn):.2f}s")
    raw["c3"] = {"record_bytes": size, "records_per_master": per_master, "megabytes": moved_mb,
                 "bus_s": bus, "connection_s": conn,
                 "bus_mb_per_s": moved_mb / median(bus), "connection_mb_per_s": moved_mb / median(conn)}
