"""Persistence and replication of registrations (docs/commands.md#persistence, #replication):
DEBUG RELOAD, SAVE and a restart on the same directory, AOF (with and without BGREWRITEAOF, with and
without the RDB preamble): the same registrations with the same ids and sessions, statistics from zero,
session globals as of the registration, the script body's execute() writes and run() not repeated,
onRegistered run again, keyed time events resumed, nothing fired or hooked while loading.
Replicas started with --replicaof list every registration, unregistration and upgrade and fire none.

Every wait is a polling loop with a generous deadline; nothing here measures speed. The few sleeps
check that something does NOT happen, which holds whatever the timing.
"""

import os
import subprocess
import tempfile
import time

import pytest

from conftest import Server, id_number, pyexecute, stop_servers, wait_until
from harness import REDIS_SERVER, START_DEADLINE, _answers_ping, free_port
from test_registrations_keys import (
    dump_registrations,
    register,
    register_one,
    registered_executions,
    stats,
    wait_stats,
)

COUNTERS = ["numTriggered", "numSuccess", "numFailures", "numAborted", "lastRunDurationMS",
            "totalRunDurationMS", "lastError"]


class PServer(Server):
    """A redis-server with the module, with extra server arguments (e.g. --appendonly yes,
    --replicaof), that can be stopped and started again on the same directory."""

    def __init__(self, so, module_args, workdir, extra):
        super().__init__(so, module_args, workdir)
        self.extra = [str(a) for a in extra]
        self.starts = 0

    def start(self, extra=()):
        self.starts += 1
        self.logfile = os.path.join(self.dir, f"redis-{self.starts}.log")
        for _attempt in range(5):
            port = free_port()
            cmd = [
                REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                "--loadmodule", self.so, *self.module_args,
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--enable-debug-command", "yes", "--logfile", self.logfile, "--daemonize", "no",
                *self.extra, *[str(a) for a in extra],
            ]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.port = port
            if _answers_ping(self.proc, port):
                return self
            if self.proc.poll() is not None and "Address already in use" in self.log():
                continue
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            pytest.fail(f"redis-server did not answer PING within {START_DEADLINE}s "
                        f"(exit code {self.proc.returncode}); log tail:\n{self.log_tail()}")
        pytest.fail("could not find a free port for redis-server")

    def restart(self):
        self.kill()
        return self.start()


@pytest.fixture
def pstart(so_path):
    servers = []
    dirs = []

    def start(*module_args, extra=()):
        d = tempfile.mkdtemp(prefix="rustgears-persist-")
        dirs.append(d)
        s = PServer(so_path, module_args, d, extra)
        servers.append(s)
        return s.start()

    yield start
    stop_servers(servers, dirs)


def definitions(client):
    """What persistence keeps of each registration: everything but the counters."""
    out = []
    for reg in dump_registrations(client):
        data = {k: v for k, v in reg["data"].items() if k not in COUNTERS and not k.startswith("avg")
                and k != "lastEstimatedLagMS"}
        out.append((reg["id"], reg["reader"], reg["desc"], data, reg["PD"], reg["pool"]))
    return out


def assert_counters_zero(client):
    for reg in dump_registrations(client):
        d = reg["data"]
        assert [d[k] for k in COUNTERS] == [0, 0, 0, 0, 0, 0, None], reg
        assert float(d["avgRunDurationMS"]) == 0


# One session with a KeysReader (sync), a StreamReader, a trigger and a hook; another session with a
# KeysReader in async_local mode.
SESSION_A = (
    "GB('KeysReader', desc='keys').foreach(lambda r: execute('INCR', 'count:' + r['key']))"
    ".register(prefix='k*', mode='sync', eventTypes=['set'], keyTypes=['string'])\n"
    "GB('StreamReader', desc='stream').foreach(lambda e: execute('RPUSH', 'seen', e['id']))"
    ".register(prefix='st:*', batch=2, duration=50, trimStream=False, onFailedPolicy='retry', onFailedRetryInterval=2)\n"
    "GB('CommandReader').map(lambda x: 'triggered:' + ','.join(x[1:])).register(trigger='t', inorder=True)\n"
    "GB('CommandReader').map(lambda x: 'hooked:' + str(call_next(*x[1:]))).register(hook='hset', mode='sync')\n"
)
SESSION_B = "GB().foreach(lambda r: execute('INCR', 'b:' + r['key'])).register(prefix='j*', mode='async_local')\n"


def setup_sessions(r):
    a = register(r, SESSION_A, "ID", "sessA", "DESCRIPTION", "session A")
    b = register(r, SESSION_B, "ID", "sessB")
    assert len(a) == 4 and len(b) == 1
    return a + b


def exercise(r, server, tag):
    """Uses every registration of setup_sessions once; checks what each did."""
    c = server.client()
    c.set(f"k{tag}", "v")
    assert c.get(f"count:k{tag}") == "1"
    c.xadd("st:1", {"f": "v"}, id=f"{tag}-1")
    c.xadd("st:1", {"f": "v"}, id=f"{tag}-2")
    wait_until(lambda: c.lrange("seen", -2, -1) == [f"{tag}-1", f"{tag}-2"], what="the stream batch")
    assert c.execute_command("RG.TRIGGER", "t", "a", tag) == [f"triggered:a,{tag}"]
    assert c.hset("h", f"f{tag}", "v") == "hooked:1"
    c.set(f"j{tag}", "v")
    wait_until(lambda: c.get(f"b:j{tag}") == "1", what="the async_local registration")


def check_after_load(r, before):
    assert definitions(r) == before
    assert_counters_zero(r)
    assert registered_executions(r) == []


# --------------------------------------------------------------------------------------------
# DEBUG RELOAD, SAVE + restart, AOF
# --------------------------------------------------------------------------------------------


def test_debug_reload(pstart):
    s = pstart()
    r = s.client()
    setup_sessions(r)
    exercise(r, s, 1)
    before = definitions(r)
    sessions = r.execute_command("RG.PYDUMPSESSIONS")
    assert r.execute_command("DEBUG", "RELOAD") == "OK"
    check_after_load(r, before)
    assert r.execute_command("RG.PYDUMPSESSIONS") == sessions
    exercise(r, s, 2)


def test_save_and_restart(pstart):
    s = pstart()
    r = s.client()
    ids = setup_sessions(r)
    exercise(r, s, 1)
    before = definitions(r)
    sessions = r.execute_command("RG.PYDUMPSESSIONS")
    assert r.save()
    s.restart()
    r = s.client()
    check_after_load(r, before)
    assert r.execute_command("RG.PYDUMPSESSIONS") == sessions
    exercise(r, s, 2)
    # the plan counter is above every loaded id
    new = register_one(r, "GB().register(prefix='new*')")
    assert id_number(new) > max(id_number(i) for i in ids)


NO_PREAMBLE = pytest.mark.xfail(
    strict=True,
    reason="known gap (docs/architecture.md#known-gaps): registrations are module aux data, which an AOF "
           "rewrite writes only in its RDB preamble (aof-use-rdb-preamble yes, the default)")


@pytest.mark.parametrize("rewrite, preamble", [(False, "yes"), (True, "yes"),
                                               pytest.param(True, "no", marks=NO_PREAMBLE)],
                         ids=["aof-only", "bgrewriteaof", "bgrewriteaof-no-rdb-preamble"])
def test_aof_restart(pstart, rewrite, preamble):
    s = pstart(extra=["--appendonly", "yes", "--aof-use-rdb-preamble", preamble])
    r = s.client()
    ids = setup_sessions(r)
    exercise(r, s, 1)
    before = definitions(r)
    if rewrite:
        r.bgrewriteaof()
        wait_until(lambda: (lambda i: i["aof_rewrite_in_progress"] == 0 and i["aof_rewrite_scheduled"] == 0
                            and i["aof_last_bgrewrite_status"] == "ok")(r.info("persistence")),
                   what="the AOF rewrite")
    s.restart()
    r = s.client()
    check_after_load(r, before)
    # nothing fired or was hooked while the AOF was replayed
    assert r.get("count:k1") == "1"
    assert r.hgetall("h") == {"f1": "v"}
    assert r.lrange("seen", 0, -1) == ["1-1", "1-2"]
    exercise(r, s, 2)
    new = register_one(r, "GB().register(prefix='new*')")
    assert id_number(new) > max(id_number(i) for i in ids)


def test_aof_replay_is_not_hooked_and_fires_nothing(pstart):
    s = pstart(extra=["--appendonly", "yes"])
    r = s.client()
    r.hset("h", "f", "v")
    r.set("k1", "v")
    register(r, (
        "GB('CommandReader').map(lambda x: 'hooked').register(hook='hset', mode='sync')\n"
        "GB().foreach(lambda r: execute('INCR', 'fired')).register(prefix='k*', mode='sync')\n"
    ))
    r.set("k2", "v")
    assert r.get("fired") == "1"
    s.restart()
    r = s.client()
    assert r.hgetall("h") == {"f": "v"}
    assert r.get("fired") == "1"
    assert r.hset("h", "g", "v") == "hooked"


# --------------------------------------------------------------------------------------------
# What is restored: globals, the script body, onRegistered, time events
# --------------------------------------------------------------------------------------------

GLOBALS = (
    "counter = 100\n"
    "def bump(r):\n"
    "    global counter\n"
    "    counter += 1\n"
    "    execute('SET', 'counter', str(counter))\n"
    "GB().foreach(bump).register(prefix='a*', mode='sync')\n"
    "GB().foreach(bump).register(prefix='b*', mode='sync')\n"
    "counter = 10\n"
)


def reload_by(s, r, how):
    if how == "debug-reload":
        assert r.execute_command("DEBUG", "RELOAD") == "OK"
        return r
    assert r.save()
    s.restart()
    return s.client()


@pytest.mark.parametrize("how", ["debug-reload", "restart"])
def test_globals_restored_as_of_registration(pstart, how):
    s = pstart()
    r = s.client()
    register(r, GLOBALS)
    r.set("a1", "v")
    r.set("b1", "v")
    r.set("a2", "v")
    assert r.get("counter") == "13"
    r = reload_by(s, r, how)
    # as of the registration (the end of the script), not as of the save
    r.set("a3", "v")
    assert r.get("counter") == "11"
    # both registrations still share one globals dict
    r.set("b2", "v")
    assert r.get("counter") == "12"


@pytest.mark.parametrize("how", ["debug-reload", "restart"])
def test_script_body_writes_and_run_are_not_repeated(pstart, how):
    s = pstart()
    r = s.client()
    assert pyexecute(r, (
        "execute('INCR', 'body_runs')\n"
        "GB('ShardsIDReader').foreach(lambda x: execute('INCR', 'run_runs')).run()\n"
        "GB().foreach(lambda r: execute('INCR', 'fired')).register(prefix='k*', mode='sync')\n"
    )) == "OK"
    wait_until(lambda: r.get("run_runs") == "1", what="the script's run()")
    r = reload_by(s, r, how)
    assert r.get("body_runs") == "1"
    r.set("k1", "v")
    assert r.get("fired") == "1"
    time.sleep(1)  # a repeated run() would have written by now; it must never happen
    assert r.get("run_runs") == "1"
    assert r.get("body_runs") == "1"


@pytest.mark.parametrize("how", ["debug-reload", "restart"])
def test_on_registered_runs_again_on_load(pstart, how):
    s = pstart()
    r = s.client()
    register_one(r, "GB().register(prefix='k*', onRegistered=lambda: log('onreg-was-called-here'))")
    s.wait_log("GEARS: onreg-was-called-here")
    if how == "debug-reload":
        assert r.execute_command("DEBUG", "RELOAD") == "OK"
        wait_until(lambda: s.log().count("GEARS: onreg-was-called-here") == 2, what="onRegistered on reload")
    else:
        assert r.save()
        s.restart()
        wait_until(lambda: s.log().count("GEARS: onreg-was-called-here") == 1, what="onRegistered on load")


@pytest.mark.parametrize("how", ["debug-reload", "restart"])
def test_keyed_time_event_survives(pstart, how):
    s = pstart()
    r = s.client()
    assert pyexecute(r, "def tick():\n    execute('INCR', 'ticks')\nregisterTE(1, tick, 'tek')\n") == "OK"
    wait_until(lambda: int(r.get("ticks") or 0) >= 1, what="a tick")
    r = reload_by(s, r, how)
    assert r.type("tek") == "rg_timeev"
    after = int(r.get("ticks"))
    wait_until(lambda: int(r.get("ticks")) >= after + 2, what="ticks after the reload")
    # deleting the key still stops it
    assert r.delete("tek") == 1
    stopped = r.get("ticks")
    time.sleep(2.5)  # no tick can come any more, whatever the timing
    assert r.get("ticks") == stopped


def test_unregistered_and_upgraded_stay_so_after_reload(pstart):
    s = pstart()
    r = s.client()
    a, b = register(r, "GB().register(prefix='a*')\nGB().register(prefix='b*')\n", "ID", "s1")
    assert r.execute_command("RG.UNREGISTER", a) == "OK"
    c = register_one(r, "GB().register(prefix='c*')", "ID", "s2")
    assert pyexecute(r, "GB().register(prefix='d*')", "ID", "s2", "UPGRADE") == "OK"
    before = definitions(r)
    assert [x[0] for x in before][0] == b and c not in [x[0] for x in before]
    r = reload_by(s, r, "restart")
    assert definitions(r) == before


# --------------------------------------------------------------------------------------------
# Replication
# --------------------------------------------------------------------------------------------


def start_replica(pstart, master):
    rep = pstart(extra=["--replicaof", "127.0.0.1", master.port])
    c = rep.client()
    wait_until(lambda: c.info("replication").get("master_link_status") == "up", what="the replica to sync")
    return rep, c


def ids(client):
    return [reg["id"] for reg in dump_registrations(client)]


def test_replica_lists_registrations_and_fires_none(start_server, pstart):
    master = start_server()
    m = master.client()
    first = setup_sessions(m)
    replica, rc = start_replica(pstart, master)
    wait_until(lambda: ids(rc) == first, what="the registrations made before the replica attached")
    assert definitions(rc) == definitions(m)
    later = register_one(m, "GB().foreach(lambda r: execute('INCR', 'later')).register(prefix='l:*')", "ID", "sessC")
    wait_until(lambda: ids(rc) == first + [later], what="a registration made after it attached")
    assert rc.execute_command("RG.PYDUMPSESSIONS") == m.execute_command("RG.PYDUMPSESSIONS")

    exercise(m, master, 1)
    m.set("l:1", "v")
    wait_until(lambda: m.get("later") == "1")
    m.set("sync-point", "1")
    wait_until(lambda: rc.get("sync-point") == "1", what="replication to catch up")
    # the executions' writes arrive once, as the master made them
    assert rc.get("count:k1") == "1"
    assert rc.get("later") == "1"
    assert rc.get("b:j1") == "1"
    assert rc.hgetall("h") == {"f1": "v"}
    assert rc.lrange("seen", 0, -1) == ["1-1", "1-2"]
    time.sleep(1)  # the replica must never fire; give it every chance to do it wrongly
    assert rc.get("count:k1") == "1" and rc.get("later") == "1"
    for reg in dump_registrations(rc):
        assert reg["data"]["numTriggered"] == 0, reg


def test_unregistration_and_upgrade_reach_the_replica(start_server, pstart):
    master = start_server()
    m = master.client()
    replica, rc = start_replica(pstart, master)
    a = register_one(m, "GB().register(prefix='a*')", "ID", "s1")
    b = register_one(m, "GB('CommandReader').map(lambda x: 'v1').register(trigger='t')", "ID", "s2")
    wait_until(lambda: ids(rc) == [a, b], what="the registrations on the replica")
    assert m.execute_command("RG.UNREGISTER", a) == "OK"
    wait_until(lambda: ids(rc) == [b], what="the unregistration on the replica")
    assert pyexecute(m, "GB('CommandReader').map(lambda x: 'v2').register(trigger='t')", "ID", "s2", "UPGRADE") == "OK"
    new = ids(m)
    assert len(new) == 1 and new[0] != b
    wait_until(lambda: ids(rc) == new, what="the upgrade on the replica")
    assert definitions(rc) == definitions(m)


def test_replica_does_not_hook_replicated_commands(start_server, pstart):
    master = start_server()
    m = master.client()
    replica, rc = start_replica(pstart, master)
    register_one(m, (
        "def h(x):\n"
        "    execute('INCR', 'hooked')\n"
        "    return call_next(*x[1:])\n"
        "GB('CommandReader').map(h).register(hook='hset', mode='sync', convertToStr=False)\n"
    ))
    wait_until(lambda: len(ids(rc)) == 1)
    assert m.hset("h", "f", "v") == 1
    assert m.get("hooked") == "1"
    m.set("sync-point", "1")
    wait_until(lambda: rc.get("sync-point") == "1", what="replication to catch up")
    assert rc.hgetall("h") == {"f": "v"}
    assert rc.get("hooked") == "1"


def test_replica_stream_registration_processes_nothing(start_server, pstart):
    master = start_server()
    m = master.client()
    replica, rc = start_replica(pstart, master)
    rid = register_one(m, "GB('StreamReader').foreach(lambda e: execute('RPUSH', 'seen', e['id'])).register(prefix='st')")
    wait_until(lambda: ids(rc) == [rid])
    m.xadd("st", {"f": "v"}, id="1-0")
    wait_stats(m, rid, numSuccess=1)
    m.set("sync-point", "1")
    wait_until(lambda: rc.get("sync-point") == "1", what="replication to catch up")
    assert rc.lrange("seen", 0, -1) == ["1-0"]
    assert rc.xlen("st") == 0
    assert stats(rc, rid)["numTriggered"] == 0


def test_replica_promoted_processes_pending_stream_entries(start_server, pstart):
    master = start_server()
    m = master.client()
    replica, rc = start_replica(pstart, master)
    rid = register_one(m, "GB('StreamReader').foreach(lambda e: execute('RPUSH', 'seen', e['id'])).register(prefix='st')")
    wait_until(lambda: ids(rc) == [rid])
    assert m.execute_command("RG.PAUSEREGISTRATIONS", rid) == "OK"
    m.xadd("st", {"f": "v"}, id="1-0")
    m.set("sync-point", "1")
    wait_until(lambda: rc.get("sync-point") == "1", what="replication to catch up")
    # promote the replica: its (unpaused) stream registration picks up the entry
    assert rc.execute_command("REPLICAOF", "NO", "ONE") == "OK"
    if stats(rc, rid)["status"] == "PAUSED":
        assert rc.execute_command("RG.UNPAUSEREGISTRATIONS", rid) == "OK"
    wait_until(lambda: rc.lrange("seen", 0, -1) == ["1-0"], what="the promoted replica to process the entry")


# --------------------------------------------------------------------------------------------
# Data the module cannot read
# --------------------------------------------------------------------------------------------


def test_garbage_registration_data_fails_to_load_cleanly(pstart):
    """An RDB whose registration data is corrupted: the server refuses to load it, without crashing."""
    s = pstart(extra=["--rdbcompression", "no", "--rdbchecksum", "no"])
    r = s.client()
    marker = "MARKER_" + "q" * 200
    register_one(r, f"# {marker}\nGB().register(prefix='k*')\n")
    assert r.save()
    s.kill()
    path = os.path.join(s.dir, "dump.rdb")
    data = open(path, "rb").read()
    at = data.find(marker.encode())
    if at < 0:
        pytest.skip("the registration data does not hold the script text verbatim")
    # Replace the stored script and everything after it (up to the RDB trailer) by garbage.
    end = len(data) - 9  # EOF opcode + 8-byte checksum
    garbage = bytes((i * 37 + 11) % 256 for i in range(end - at))
    with open(path, "wb") as f:
        f.write(data[:at] + garbage + data[end:-8] + b"\0" * 8)
    s.expect_exit = True
    s.logfile = os.path.join(s.dir, "redis-garbage.log")
    cmd = [REDIS_SERVER, "--port", str(free_port()), "--bind", "127.0.0.1", "--loadmodule", s.so,
           "--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", s.logfile, "--daemonize", "no"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the server kept running on garbage registration data")
    log = s.log()
    assert code > 0, (code, log[-3000:])  # exited by itself, not killed by a signal
    assert "crashed by signal" not in log and "BUG REPORT" not in log, log[-3000:]
    s.proc = proc  # already gone; the fixture's health check must not complain
    s.check_health = lambda: None
