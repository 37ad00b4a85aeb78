"""A local Redis Cluster with the module on every node, for tests/test_cluster.py and `make cluster`
(scripts/cluster.py).

    with Cluster(masters=3, replicas=1, module_args=["ExecutionThreads", 2]) as c:
        c.masters[0].client().execute_command("RG.PYEXECUTE", "GB().run()")

Every node is `redis-server --cluster-enabled yes` in its own temporary directory (nodes.conf, log).
`start()` launches them, forms the cluster with `redis-cli --cluster create` and waits until every node
says `cluster_state:ok`, knows every other node, agrees on who the masters are, and every replica's
link to its master is up. `stop()` kills everything and removes the directories, and runs also when
`start()` fails (the error then carries the log tails).

In pytest, `cluster_fixture(...)` makes a fixture (module scope by default):

    from cluster import cluster_fixture
    cluster = cluster_fixture(masters=3, replicas=1)

No pytest at import time and redis-py only for the `client()` methods: scripts/cluster.py runs
outside pytest with nothing but the Python standard library. Every wait is a polling loop with a
generous deadline, never a speed assertion.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import REDIS_SERVER, SOCKET_TIMEOUT, Clients, RawConnection, ServerStartError, _answers_ping, module_path

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

# Upper bounds for waiting (the machine may be loaded), never speed assertions.
CLUSTER_DEADLINE = 180.0
STOP_DEADLINE = 10.0
# How long a node may be unreachable before the others mark it failing (Redis: 15000). Shorter, so
# that a killed master's replica takes over within seconds; long enough that a node of a loaded
# machine is not taken for dead (workers run scripts off the main thread, which answers the bus).
NODE_TIMEOUT_MS = 5000

HASH_SLOTS = 16384
# The cluster bus listens on port + 10000, which must be a valid port too.
BUS_OFFSET = 10000
MAX_PORT = 65535 - BUS_OFFSET - 1


class ClusterError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def port_free(port, host="127.0.0.1"):
    """Whether `port` can be bound on `host` now (with SO_REUSEADDR, as redis-server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_cluster_port(taken=()):
    """A port p such that p and the bus port p + 10000 are free and p + 10000 is valid.

    harness.free_port() asks the kernel for an ephemeral port, which may be above 55535 and says
    nothing about p + 10000. Here both ports are drawn below the ephemeral range when it leaves
    room (Linux: 32768-60999, so p in 10000-22767), where the kernel never hands out ports to
    outgoing connections or to free_port(), so the servers of the other tests cannot take them."""
    low = 10000
    high = min(_ephemeral_low(), MAX_PORT + BUS_OFFSET + 1) - BUS_OFFSET - 1
    if high - low < 1000:
        high = MAX_PORT
    rng = random.SystemRandom()
    for _ in range(1000):
        p = rng.randint(low, high)
        if p in taken or p + BUS_OFFSET in taken or p - BUS_OFFSET in taken:
            continue
        if port_free(p) and port_free(p + BUS_OFFSET):
            return p
    raise ClusterError("no free port pair (p, p + 10000) found")


# --------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------


class Node(Clients):
    """One redis-server of the cluster. `role` ('master' or 'replica'), `node_id`, `master_id`
    (a replica's master) and `slots` ([(first, last), ...]) are what the node says of itself at the
    last `Cluster.refresh()`."""

    def __init__(self, host, port, workdir):
        self.host = host
        self.port = port
        self.dir = workdir
        self.logfile = os.path.join(workdir, "redis.log")
        self.proc = None
        self.node_id = None
        self.role = None
        self.master_id = None
        self.slots = []
        self.killed = False  # stopped on purpose (kill()), not a crash

    def __repr__(self):
        return f"Node({self.host}:{self.port} {self.role} {self.node_id})"

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def call(self, *args, timeout=SOCKET_TIMEOUT):
        """One command on a fresh RawConnection (exact RESP types)."""
        c = RawConnection(self.port, timeout=timeout)
        try:
            return c.call(*args)
        finally:
            c.close()

    def info(self, *args, timeout=30):
        """CLUSTER INFO / INFO <section> as a dict of str."""
        text = self.call(*args, timeout=timeout)
        out = {}
        for line in text.decode().splitlines():
            if ":" in line and not line.startswith("#"):
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
        return out


def parse_cluster_nodes(text):
    """CLUSTER NODES as a list of dicts: id, addr (host:port), port, flags (set), master (id or
    None), link ('connected'/'disconnected'), slots ([(first, last)])."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split("@")[0]
        slots = []
        for s in parts[8:]:
            if s.startswith("["):  # a slot being migrated or imported
                continue
            first, _, last = s.partition("-")
            slots.append((int(first), int(last or first)))
        out.append({
            "id": parts[0],
            "addr": addr,
            "port": int(addr.rpartition(":")[2]) if ":" in addr and addr.rpartition(":")[2] else 0,
            "flags": set(parts[2].split(",")),
            "master": None if parts[3] == "-" else parts[3],
            "link": parts[7],
            "slots": slots,
        })
    return out


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


class Cluster:
    """`masters` masters with `replicas` replicas each, the module loaded on all of them with
    `module_args` (module None: no module). `ports` fixes the ports (masters first, then replicas,
    as `redis-cli --cluster create` assigns them); by default free ones are chosen. `extra_args`
    are more redis-server options for every node."""

    def __init__(self, masters=3, replicas=0, module_args=(), *, module="default", ports=None,
                 node_timeout=NODE_TIMEOUT_MS, deadline=CLUSTER_DEADLINE, host="127.0.0.1", extra_args=(),
                 verbose=False):
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.n_masters = masters
        self.n_replicas = replicas
        self.module = module_path() if module == "default" else module
        self.module_args = [str(a) for a in module_args]
        self.total = masters * (1 + replicas)
        if ports is not None and len(ports) != self.total:
            raise ValueError(f"{self.total} ports needed, {len(ports)} given")
        for p in ports or ():
            if not 0 < p <= MAX_PORT:
                raise ValueError(f"port {p}: cluster ports must be at most {MAX_PORT} (bus port = port + 10000)")
        self.fixed_ports = list(ports) if ports is not None else None
        self.node_timeout = node_timeout
        self.deadline = deadline
        self.host = host
        self.extra_args = [str(a) for a in extra_args]
        self.verbose = verbose
        self.nodes = []
        self._cluster_clients = []
        self.root = None  # the temporary directory that holds one directory per node

    # -- views -----------------------------------------------------------------------------
    @property
    def masters(self):
        """The live masters, in port order of creation (as of the last refresh())."""
        return [n for n in self.nodes if n.role == "master" and n.alive()]

    @property
    def replicas(self):
        return [n for n in self.nodes if n.role == "replica" and n.alive()]

    def alive_nodes(self):
        return [n for n in self.nodes if n.alive()]

    def node(self, port=None, node_id=None):
        for n in self.nodes:
            if (port is not None and n.port == port) or (node_id is not None and n.node_id == node_id):
                return n
        raise KeyError(port if port is not None else node_id)

    def replicas_of(self, master):
        return [n for n in self.nodes if n.role == "replica" and n.master_id == master.node_id and n.alive()]

    def keyslot(self, key):
        """The hash slot of `key`, as the cluster computes it."""
        return self.alive_nodes()[0].call("CLUSTER", "KEYSLOT", key)

    def owner(self, key):
        """The live master that serves `key`."""
        slot = self.keyslot(key)
        for m in self.masters:
            if any(a <= slot <= b for a, b in m.slots):
                return m
        raise ClusterError(f"no live master serves slot {slot}")

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _log(self, msg):
        if self.verbose:
            print(msg, flush=True)

    def start(self):
        try:
            self.root = tempfile.mkdtemp(prefix="rustgears-cluster-")
            self._spawn_all()
            self._create()
            self.wait_ok()
            return self
        except BaseException as e:
            tails = self._tails()
            self.stop()
            if isinstance(e, ClusterError) and tails:
                raise ClusterError(f"{e}\n\n{tails}") from None
            raise

    def _tails(self):
        out = []
        for n in self.nodes:
            tail = n.log_tail(30)
            state = "running" if n.alive() else f"exited with {n.proc.returncode}" if n.proc else "not started"
            out.append(f"--- node {n.addr} ({state}) log tail:\n{tail}")
        return "\n".join(out)

    def _command(self, port, workdir):
        cmd = [
            REDIS_SERVER,
            "--port", str(port),
            "--bind", self.host,
            *(["--loadmodule", self.module, *self.module_args] if self.module else []),
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
            "--enable-debug-command", "yes",
            "--logfile", os.path.join(workdir, "redis.log"),
            "--daemonize", "no",
            "--cluster-enabled", "yes",
            "--cluster-config-file", os.path.join(workdir, "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout),
            *self.extra_args,
        ]
        return cmd

    def _spawn(self, node):
        node.proc = subprocess.Popen(self._command(node.port, node.dir), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _spawn_all(self):
        if self.fixed_ports:
            for port in self.fixed_ports:
                if not (port_free(port, self.host) and port_free(port + BUS_OFFSET, self.host)):
                    raise ClusterError(f"port {port} or its bus port {port + BUS_OFFSET} is in use")
            ports = self.fixed_ports
        else:
            ports = []
            for _ in range(self.total):
                ports.append(free_cluster_port(set(ports)))
        taken = set(ports)
        for port in ports:
            d = os.path.join(self.root, str(port))
            os.mkdir(d)
            node = Node(self.host, port, d)
            self.nodes.append(node)
            self._spawn(node)  # all at once: the module loads in parallel
        for node in self.nodes:
            for _attempt in range(5):
                if _answers_ping(node.proc, node.port, self.deadline, 0.05):
                    break
                exited = node.proc.poll() is not None
                log = node.log()
                if exited and "Address already in use" in log and not self.fixed_ports:
                    # lost a port race: another port for this node
                    shutil.rmtree(node.dir, ignore_errors=True)
                    taken.discard(node.port)
                    node.port = free_cluster_port(taken | {n.port for n in self.nodes})
                    taken.add(node.port)
                    node.dir = os.path.join(self.root, str(node.port))
                    node.logfile = os.path.join(node.dir, "redis.log")
                    os.mkdir(node.dir)
                    self._spawn(node)
                    continue
                if not exited:
                    node.proc.kill()
                    node.proc.wait()
                what = (f"exited with code {node.proc.returncode} at start" if exited
                        else f"did not answer PING within {self.deadline}s")
                raise ServerStartError(f"cluster node {node.addr} {what}; log tail:\n{node.log_tail(80)}")
            else:
                raise ClusterError(f"could not find free ports for node {node.addr}")
            node.node_id = node.call("CLUSTER", "MYID").decode()
            self._log(f"node {node.addr} up ({node.node_id})")

    def _create(self):
        cmd = [REDIS_CLI, "--cluster", "create", *[n.addr for n in self.nodes],
               "--cluster-replicas", str(self.n_replicas), "--cluster-yes"]
        try:
            run = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=self.deadline)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"redis-cli --cluster create did not finish within {self.deadline}s:\n{e.stdout}") from None
        if run.returncode != 0 or "[OK] All 16384 slots covered" not in run.stdout:
            raise ClusterError(f"redis-cli --cluster create failed (exit code {run.returncode}):\n"
                               f"{run.stdout}\n{run.stderr}")
        self._log("redis-cli --cluster create: OK")

    def refresh(self):
        """Reads role, master and slots of every live node from the node itself."""
        for n in self.alive_nodes():
            for e in parse_cluster_nodes(n.call("CLUSTER", "NODES").decode()):
                if "myself" in e["flags"]:
                    n.node_id = e["id"]
                    n.role = "master" if "master" in e["flags"] else "replica"
                    n.master_id = e["master"]
                    n.slots = e["slots"]
        return self

    def _settled(self):
        """None once the live nodes agree on a healthy cluster, else what is still missing."""
        live = self.alive_nodes()
        if not live:
            return "no live node"
        ids = {n.node_id for n in self.nodes}
        live_ids = {n.node_id for n in live}
        views = {}
        for n in live:
            info = n.info("CLUSTER", "INFO")
            if info.get("cluster_state") != "ok":
                return f"{n.addr}: cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_slots_assigned") != str(HASH_SLOTS) or info.get("cluster_slots_ok") != str(HASH_SLOTS):
                return f"{n.addr}: slots assigned {info.get('cluster_slots_assigned')}, ok {info.get('cluster_slots_ok')}"
            if info.get("cluster_known_nodes") != str(len(ids)):
                return f"{n.addr}: knows {info.get('cluster_known_nodes')} of {len(ids)} nodes"
            entries = {e["id"]: e for e in parse_cluster_nodes(n.call("CLUSTER", "NODES").decode())}
            if set(entries) != ids:
                return f"{n.addr}: sees {sorted(entries)}, not {sorted(ids)}"
            for i in live_ids:
                e = entries[i]
                if e["flags"] & {"handshake", "noaddr", "fail", "fail?"}:
                    return f"{n.addr}: flags {sorted(e['flags'])} for live node {e['addr']}"
                if "myself" not in e["flags"] and e["link"] != "connected":
                    return f"{n.addr}: link to {e['addr']} {e['link']}"
            views[n.addr] = {i: ("master" if "master" in entries[i]["flags"] else entries[i]["master"])
                             for i in live_ids}
        if len({tuple(sorted(v.items())) for v in views.values()}) != 1:
            return f"nodes disagree on the roles: {views}"
        self.refresh()
        if len(self.masters) != self.n_masters:
            return f"{len(self.masters)} live masters, expected {self.n_masters}"
        for n in self.replicas:
            rep = n.info("INFO", "replication")
            if rep.get("master_link_status") != "up":
                return f"replica {n.addr}: master_link_status:{rep.get('master_link_status')}"
        return self._module_settled()

    def _module_settled(self):
        """None once the module on every master sees every master (it reads the topology every
        second): an execution started earlier would run on the masters its initiator knew of."""
        if self.module is None or len(self.masters) < 2:
            return None
        for n in self.masters:
            info = n.call("RG.INFOCLUSTER")
            seen = len(info[4]) if isinstance(info, list) and len(info) > 4 else 0
            if seen != len(self.masters):
                return f"{n.addr}: the module sees {seen} of {len(self.masters)} masters"
        return None

    def wait_ok(self, timeout=None):
        """Waits until every live node says cluster_state:ok and all agree (see _settled)."""
        timeout = self.deadline if timeout is None else timeout
        end = time.monotonic() + timeout
        last = None
        while True:
            dead = [n for n in self.nodes if not n.alive() and not n.killed]
            if dead:
                raise ClusterError(f"node {dead[0].addr} exited with code {dead[0].proc.returncode}")
            try:
                last = self._settled()
            except (OSError, ConnectionError) as e:
                last = repr(e)
            if last is None:
                self._log("cluster_state:ok on every node")
                return self
            if time.monotonic() > end:
                raise ClusterError(f"cluster not settled after {timeout}s: {last}")
            time.sleep(0.1)

    def kill(self, node):
        """SIGKILL one node (a failure, not a shutdown). It stays in `nodes`, marked killed."""
        node.killed = True
        node.close_clients()
        if node.alive():
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(timeout=STOP_DEADLINE)
        return node

    def kill_master(self, master=None):
        """SIGKILL a master (by default the first one that has a replica) and return it; then
        `wait_failover(killed)` waits for its replica to take over."""
        self.refresh()
        if master is None:
            candidates = [m for m in self.masters if self.replicas_of(m)] or self.masters
            master = candidates[0]
        return self.kill(master)

    def wait_failover(self, killed, timeout=None):
        """Waits until a former replica of `killed` serves its slots and the cluster is ok again;
        returns the new master."""
        old_replicas = {n.node_id for n in self.nodes if n.master_id == killed.node_id}
        if not old_replicas:
            raise ClusterError(f"{killed.addr} had no replica to take over")
        self.wait_ok(timeout)
        for m in self.masters:
            if m.node_id in old_replicas and m.slots == killed.slots:
                return m
        raise ClusterError(f"no former replica of {killed.addr} serves {killed.slots}: {self.masters}")

    def client(self, **kw):
        """A cluster-aware redis-py client (redis.cluster.RedisCluster) that follows redirects."""
        from redis.cluster import ClusterNode, RedisCluster

        kw.setdefault("decode_responses", True)
        kw.setdefault("socket_timeout", SOCKET_TIMEOUT)
        c = RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in self.masters], **kw)
        self._cluster_clients.append(c)
        return c

    def problems(self):
        """The nodes that died without kill() (crashes), with their log tails."""
        return [f"cluster node {n.addr} died (exit code {n.proc.returncode}); log tail:\n{n.log_tail()}"
                for n in self.nodes if n.proc is not None and not n.killed and n.proc.poll() is not None]

    def stop(self, keep_dirs=False):
        """Kills every node (SIGTERM, then SIGKILL after STOP_DEADLINE) and removes the temporary
        directories (unless keep_dirs). Safe to call more than once."""
        for c in self._cluster_clients:
            try:
                c.close()
            except Exception:
                pass
        self._cluster_clients = []
        for n in self.nodes:
            n.close_clients()
            if n.alive():
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes:
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait()
        if self.root and not keep_dirs:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def describe(self):
        """One line per node: address, role, node id, slots or master."""
        self.refresh()
        lines = []
        for n in self.nodes:
            if not n.alive():
                lines.append(f"{n.addr}  down")
            elif n.role == "master":
                slots = " ".join(f"{a}-{b}" for a, b in n.slots)
                lines.append(f"{n.addr}  master   {n.node_id}  slots {slots}")
            else:
                m = next((x for x in self.nodes if x.node_id == n.master_id), None)
                lines.append(f"{n.addr}  replica  {n.node_id}  of {m.addr if m else n.master_id}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# pytest
# --------------------------------------------------------------------------------------------


def cluster_fixture(masters=3, replicas=0, module_args=(), scope="module", **kw):
    """A pytest fixture that starts a Cluster (with the module at conftest's `so_path`) and stops it
    at the end of its scope. Assign it to a name in a test module:

        cluster = cluster_fixture(masters=3, replicas=1, module_args=["ExecutionThreads", 2])

    A start failure fails the tests that use it (with the log tails). At teardown, a node that died
    without Cluster.kill() fails the last test, and the directories are kept for a look."""
    import pytest

    @pytest.fixture(scope=scope)
    def fixture(so_path):
        c = Cluster(masters, replicas, module_args, module=so_path, **kw)
        try:
            c.start()
        except (ClusterError, ServerStartError) as e:
            pytest.fail(f"cluster did not start: {e}", pytrace=False)
        yield c
        crashed = c.problems()
        c.stop(keep_dirs=bool(crashed))
        if crashed:
            pytest.fail("\n\n".join(crashed), pytrace=False)

    return fixture
