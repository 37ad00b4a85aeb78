"""Managing registrations (docs/commands.md): RG.DUMPREGISTRATIONS layout and statistics,
MaxExecutionsPerRegistration, RG.UNREGISTER [abortpending], RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS,
RG.CLEARREGISTRATIONSSTATS, RG.PYDUMPSESSIONS, RG.PYPROFILE, the INFO sections, sessions with
ID / DESCRIPTION / UPGRADE / REPLACE_WITH (and their rollback), registerTE, and onRegistered.

Every wait is a polling loop with a generous deadline; nothing here measures speed. The few sleeps
check that something does NOT happen, which holds whatever the timing.
"""

import re
import threading
import time

import pytest

from conftest import (
    SHARD0,
    WAIT_DEADLINE,
    Error,
    RawConnection,
    Status,
    assert_gears_error,
    dump_executions,
    exec_id,
    pyexecute,
    status_of,
    tb_end,
    wait_status,
    wait_until,
)
from harness import Double
from test_registrations_keys import (
    dump_registrations,
    register,
    register_one,
    registered_executions,
    registration,
    stats,
    wait_stats,
)

KEYS_DATA_NAMES = ["mode", "numTriggered", "numSuccess", "numFailures", "numAborted", "lastRunDurationMS",
                   "totalRunDurationMS", "avgRunDurationMS", "lastError", "args"]

# Fails for keys whose value is 'bad'; pushes the other keys to `ok`.
FAILING = (
    "def f(r):\n"
    "    if r['value'] == 'bad':\n"
    "        raise Exception('bad value')\n"
    "    execute('RPUSH', 'ok', r['key'])\n"
    "GB().foreach(f).register(prefix='k*'{extra})\n"
)

# Each execution waits for the key `gate` (bounded), then writes finished:<key>.
GATED = (
    "import time\n"
    "def f(r):\n"
    "    execute('SET', 'started:' + r['key'], '1')\n"
    "    n = 0\n"
    "    while not execute('EXISTS', 'gate') and n < 12000:\n"
    "        time.sleep(0.01)\n"
    "        n += 1\n"
    "    execute('SET', 'finished:' + r['key'], '1')\n"
    "GB().foreach(f).register(prefix='k*')\n"
)

ENDLESS = "def spin(r):\n    while True:\n        pass\nGB('ShardsIDReader').map(spin).run()\n"


def pd(session, desc="null", refcount=1, regs=(), dead="false", linked="primary"):
    return (f"{{'sessionName':'{session}', 'sessionDescription':'{desc}', 'refCount': {refcount}, "
            f"'linkedTo': {linked}, 'dead': {dead}, 'isInstallationNeeded':0, "
            f"'registrationsList':[{','.join(repr(x) for x in regs)}], 'depsList':[]}}")


def error(r, *cmd):
    """The error reply a command must get, with its exact text (redis-py would strip an `ERR ` prefix)."""
    c = RawConnection(r.connection_pool.connection_kwargs["port"])
    try:
        res = c.call(*cmd)
    finally:
        c.close()
    assert type(res) is Error, res
    return res


def sessions(r, *opts):
    return r.execute_command("RG.PYDUMPSESSIONS", *opts)


def session_entry(sid, desc=None, refcount=1, regs=(), dead="false", linked="primary"):
    return ["ID", sid, "sessionDescription", desc, "refCount", refcount, "linked", linked, "dead", dead,
            "requirementInstallationNeeded", 0, "requirements", [], "registrations", list(regs)]


# --------------------------------------------------------------------------------------------
# RG.DUMPREGISTRATIONS
# --------------------------------------------------------------------------------------------


def test_dump_registrations_empty(r):
    assert r.execute_command("RG.DUMPREGISTRATIONS") == []
    assert r.execute_command("RG.DUMPREGISTRATIONS", "ignored", "args") == []


def test_dump_layout_of_a_keys_registration(r):
    assert pyexecute(r, "GB('KeysReader', desc='my desc').register(prefix='k*', eventTypes=['set'], keyTypes=['string'], commands=['set'])",
                     "ID", "s1") == "OK"
    rid = exec_id(1)
    assert r.execute_command("RG.DUMPREGISTRATIONS") == [[
        "id", rid, "reader", "KeysReader", "desc", "my desc",
        "RegistrationData", ["mode", "async", "numTriggered", 0, "numSuccess", 0, "numFailures", 0, "numAborted", 0,
                             "lastRunDurationMS", 0, "totalRunDurationMS", 0, "avgRunDurationMS", "0", "lastError", None,
                             "args", ["regex", "k*", "eventTypes", ["set"], "keyTypes", ["string"], "hookCommands", ["set"]]],
        "PD", pd("s1", regs=[rid]),
        "ExecutionThreadPool", "DefaultPool",
    ]]


def test_dump_defaults_and_creation_order(r):
    ids = register(r, "GB().register()\nGB('CommandReader').register(trigger='t', mode='sync')\nGB('KeysReader', desc=None).register('x')\n",
                   "DESCRIPTION", "three of them", "ID", "s3")
    assert ids == [exec_id(1), exec_id(3), exec_id(5)]
    entries = r.execute_command("RG.DUMPREGISTRATIONS")
    assert [e[1] for e in entries] == ids
    assert [e[3] for e in entries] == ["KeysReader", "CommandReader", "KeysReader"]
    assert [e[5] for e in entries] == [None, None, None]
    assert entries[0][7][-1] == ["regex", "*", "eventTypes", None, "keyTypes", None, "hookCommands", None]
    assert entries[1][7][0::2] == KEYS_DATA_NAMES
    assert entries[1][7][1] == "sync"
    assert entries[1][7][-1] == ["trigger", "t", "inorder", 0]
    assert entries[2][7][-1][:2] == ["regex", "x"]
    for e in entries:
        assert e[9] == pd("s3", desc="three of them", refcount=3, regs=ids)


def test_random_session_id_in_pd(r):
    rid = register_one(r, "GB().register()")
    m = re.fullmatch(r"\{'sessionName':'([0-9a-f]{40})', .*", registration(r, rid)["PD"])
    assert m, registration(r, rid)["PD"]
    assert registration(r, rid)["PD"] == pd(m.group(1), regs=[rid])


def test_statistics_count_success_and_failure(r):
    rid = register_one(r, FAILING.format(extra=""))
    r.set("k1", "good")
    d = wait_stats(r, rid, numTriggered=1, numSuccess=1)
    assert d["lastError"] is None
    r.set("k2", "bad")
    d = wait_stats(r, rid, numTriggered=2, numSuccess=1, numFailures=1)
    assert d["lastError"].endswith(tb_end("Exception: bad value")), d["lastError"]
    r.set("k3", "bad")
    wait_stats(r, rid, numTriggered=3, numFailures=2)
    r.set("k4", "good")
    d = wait_stats(r, rid, numTriggered=4, numSuccess=2, numFailures=2, numAborted=0)
    assert d["lastError"] is None
    assert isinstance(d["lastRunDurationMS"], int) and isinstance(d["totalRunDurationMS"], int)
    assert d["totalRunDurationMS"] >= d["lastRunDurationMS"] >= 0
    assert float(d["avgRunDurationMS"]) >= 0


def test_sync_statistics(r):
    rid = register_one(r, FAILING.format(extra=", mode='sync'"))
    r.set("k1", "good")
    r.set("k2", "bad")
    d = stats(r, rid)
    assert (d["numTriggered"], d["numSuccess"], d["numFailures"], d["numAborted"]) == (2, 1, 1, 0)
    assert d["lastError"].endswith(tb_end("Exception: bad value")), d["lastError"]


def test_avg_duration_is_a_double_in_resp3(server, r):
    rid = register_one(r, "GB('StreamReader').register('s')")
    c = server.raw()
    c.call("HELLO", "3")
    entry = c.call("RG.DUMPREGISTRATIONS")[0]
    data = entry[7]
    names = [x.decode() for x in data[0::2]]
    values = dict(zip(names, data[1::2]))
    assert type(values["avgRunDurationMS"]) is Double and values["avgRunDurationMS"] == 0
    assert type(values["avgEstimatedLagMS"]) is Double
    assert values["numTriggered"] == 0
    assert stats(r, rid)["avgRunDurationMS"] == "0"


@pytest.mark.module_args("ExecutionThreads", "1")
def test_num_aborted_counts_executions_aborted_before_they_ran(r):
    rid = register_one(r, "GB().register(prefix='k*')")
    endless = pyexecute(r, ENDLESS, "UNBLOCKING")
    wait_status(r, endless, "running")
    r.set("k1", "v")
    queued = wait_until(lambda: registered_executions(r), what="the registration's execution")[0]
    assert status_of(r, queued) == "created"
    assert r.execute_command("RG.ABORTEXECUTION", queued) == "OK"
    assert status_of(r, queued) == "aborted"
    d = wait_stats(r, rid, numAborted=1)
    assert (d["numSuccess"], d["numFailures"]) == (0, 0)
    assert r.execute_command("RG.ABORTEXECUTION", endless) == "OK"


@pytest.mark.module_args("MaxExecutionsPerRegistration", "3")
def test_max_executions_per_registration(r):
    rid = register_one(r, "GB().register(prefix='k*')")
    for i in range(10):
        r.set(f"k{i}", "v")
    wait_stats(r, rid, numSuccess=10)
    # application took execution 0, the events 1..10: the three newest stay
    wait_until(lambda: registered_executions(r) == [exec_id(8), exec_id(9), exec_id(10)],
               what="only the three newest executions listed")
    assert r.execute_command("RG.CONFIGSET", "MaxExecutionsPerRegistration", "1") == ["OK"]
    r.set("k10", "v")
    wait_until(lambda: registered_executions(r) == [exec_id(11)], what="only the newest execution listed")


def test_max_executions_per_registration_default_is_100(r):
    rid = register_one(r, "GB().register(prefix='k*')")
    p = r.pipeline(transaction=False)
    for i in range(105):
        p.set(f"k{i}", "v")
    p.execute()
    wait_stats(r, rid, numSuccess=105)
    wait_until(lambda: registered_executions(r) == [exec_id(n) for n in range(6, 106)],
               what="the 100 newest executions listed")


def test_limit_is_per_registration(r):
    assert r.execute_command("RG.CONFIGSET", "MaxExecutionsPerRegistration", "2") == ["OK"]
    a, b = register(r, "GB().register(prefix='a*')\nGB().register(prefix='b*')\n")
    for i in range(4):
        r.set(f"a{i}", "v")
    wait_stats(r, a, numSuccess=4)
    r.set("b0", "v")
    wait_stats(r, b, numSuccess=1)
    # executions: application 0, a's 1..4, b's 5
    wait_until(lambda: registered_executions(r) == [exec_id(3), exec_id(4), exec_id(5)])


# --------------------------------------------------------------------------------------------
# RG.UNREGISTER
# --------------------------------------------------------------------------------------------


def test_unregister(r):
    rid = register_one(r, "GB().foreach(lambda r: execute('INCR', 'n')).register(prefix='k*')")
    r.set("k1", "v")
    wait_stats(r, rid, numSuccess=1)
    r.set("other", "x")
    unblocking = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    wait_status(r, unblocking, "done")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    assert dump_registrations(r) == []
    # its finished executions go; other executions stay
    wait_until(lambda: [e for e, _s, _r in dump_executions(r)] == [unblocking], what="its executions dropped")
    r.set("k2", "v")
    time.sleep(0.5)  # the registration is gone: nothing fires, whatever the timing
    assert r.get("n") == "1"
    assert sessions(r) == []


def test_unregister_errors(r):
    assert str(error(r, "RG.UNREGISTER", exec_id(7))) == "execution is not registered"
    assert str(error(r, "RG.UNREGISTER", "junk")) == "execution is not registered"
    assert str(error(r, "RG.UNREGISTER")) == "ERR wrong number of arguments for 'rg.unregister' command"
    rid = register_one(r, "GB().register(prefix='k*')")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    assert str(error(r, "RG.UNREGISTER", rid)) == "execution is not registered"


@pytest.mark.parametrize("flag", ["abortpending", "ABORTPENDING", "AbortPending"])
def test_unregister_abortpending(r, flag):
    rid = register_one(r, GATED)
    r.set("k1", "v")
    wait_until(lambda: r.exists("started:k1"), what="the first execution to run")
    r.set("k2", "v")
    wait_until(lambda: len(registered_executions(r)) == 2, what="the second execution to be queued")
    assert r.execute_command("RG.UNREGISTER", rid, flag) == "OK"
    assert dump_registrations(r) == []
    wait_until(lambda: registered_executions(r) == [], what="the aborted executions dropped")
    r.set("gate", "1")
    time.sleep(0.5)  # they were aborted: nothing finishes later, whatever the timing
    assert r.get("finished:k1") is None and r.get("finished:k2") is None
    assert r.get("started:k2") is None


def test_unregister_without_abortpending_lets_the_running_execution_finish(r):
    rid = register_one(r, GATED)
    r.set("k1", "v")
    wait_until(lambda: r.exists("started:k1"), what="the execution to run")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    assert dump_registrations(r) == []
    assert registered_executions(r) != []  # still running, still listed
    r.set("gate", "1")
    wait_until(lambda: r.get("finished:k1") == "1", what="the running execution to finish")
    wait_until(lambda: registered_executions(r) == [], what="its executions dropped once none runs")


# --------------------------------------------------------------------------------------------
# RG.PAUSEREGISTRATIONS, RG.UNPAUSEREGISTRATIONS
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd, word", [("RG.PAUSEREGISTRATIONS", "pause"), ("RG.UNPAUSEREGISTRATIONS", "unpause")])
def test_pause_errors(r, cmd, word):
    keys = register_one(r, "GB().register(prefix='k*')")
    trig = register_one(r, "GB('CommandReader').register(trigger='t')")
    stream = register_one(r, "GB('StreamReader').register(prefix='s')")
    assert str(error(r, cmd, keys)) == f"Reader KeysReader does not support {word}"
    assert str(error(r, cmd, trig)) == f"Reader CommandReader does not support {word}"
    assert str(error(r, cmd, exec_id(99))) == f"Execution {exec_id(99)} does not exists on shard {SHARD0}"
    assert str(error(r, cmd)) == f"ERR wrong number of arguments for '{cmd.lower()}' command"
    # several ids: all or nothing
    assert str(error(r, cmd, stream, keys)) == f"Reader KeysReader does not support {word}"
    assert str(error(r, cmd, stream, exec_id(99))) == f"Execution {exec_id(99)} does not exists on shard {SHARD0}"
    assert stats(r, stream)["status"] == "OK"
    if word == "unpause":
        assert r.execute_command("RG.PAUSEREGISTRATIONS", stream) == "OK"
        assert str(error(r, cmd, stream, trig)) == f"Reader CommandReader does not support {word}"
        assert stats(r, stream)["status"] == "PAUSED"


def test_pause_and_unpause_several(r):
    a, b = register(r, "GB('StreamReader').register(prefix='a')\nGB('StreamReader').register(prefix='b')\n")
    assert r.execute_command("RG.PAUSEREGISTRATIONS", a, b) == "OK"
    assert [stats(r, x)["status"] for x in (a, b)] == ["PAUSED", "PAUSED"]
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", a, b) == "OK"
    assert [stats(r, x)["status"] for x in (a, b)] == ["OK", "OK"]


def test_unpause_of_a_running_registration_is_ok(r):
    a = register_one(r, "GB('StreamReader').register(prefix='a')")
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", a) == "OK"
    assert stats(r, a)["status"] == "OK"


# --------------------------------------------------------------------------------------------
# RG.CLEARREGISTRATIONSSTATS
# --------------------------------------------------------------------------------------------


def test_clear_registrations_stats(r):
    keys = register_one(r, FAILING.format(extra=""))
    stream = register_one(r, "GB('StreamReader').register(prefix='s')")
    r.set("k1", "good")
    r.set("k2", "bad")
    wait_stats(r, keys, numSuccess=1, numFailures=1)
    r.xadd("s", {"f": "v"})
    wait_stats(r, stream, numSuccess=1)
    assert r.execute_command("RG.CLEARREGISTRATIONSSTATS") == "OK"
    d = stats(r, keys)
    assert [d[n] for n in KEYS_DATA_NAMES[:9]] == ["async", 0, 0, 0, 0, 0, 0, "0", None]
    d = stats(r, stream)
    assert [d[n] for n in ["numTriggered", "numSuccess", "numFailures", "numAborted", "lastRunDurationMS",
                           "totalRunDurationMS", "avgRunDurationMS", "lastEstimatedLagMS", "avgEstimatedLagMS",
                           "lastError", "status"]] == [0, 0, 0, 0, 0, 0, "0", 0, "0", None, "OK"]
    # counting goes on from zero
    r.set("k3", "good")
    wait_stats(r, keys, numTriggered=1, numSuccess=1)
    assert str(error(r, "RG.CLEARREGISTRATIONSSTATS", "x")) == "ERR wrong number of arguments for 'rg.clearregistrationsstats' command"


def test_management_commands_use_ids(r):
    assert register(r, "GB().register(prefix='k*')") == [exec_id(1)]  # plan 0, 1, 2; execution 0
    assert r.execute_command("RG.CLEARREGISTRATIONSSTATS") == "OK"  # plan 3; execution 1
    stream = register_one(r, "GB('StreamReader').register(prefix='s')")  # plan 4, 5, 6; execution 2
    assert stream == exec_id(5)
    assert r.execute_command("RG.PAUSEREGISTRATIONS", stream) == "OK"  # plan 7; execution 3
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", stream) == "OK"  # plan 8; execution 4
    assert register(r, "GB().register(prefix='j*')") == [exec_id(10)]  # plan 9, 10, 11; execution 5
    r.set("k1", "v")
    wait_stats(r, exec_id(1), numSuccess=1)
    assert registered_executions(r) == [exec_id(6)]


# --------------------------------------------------------------------------------------------
# RG.PYDUMPSESSIONS
# --------------------------------------------------------------------------------------------


def test_pydumpsessions(r):
    assert sessions(r) == []
    register(r, "GB().register(prefix='b*')\nGB().register(prefix='c*')\n", "ID", "sb", "DESCRIPTION", "the b session")
    register(r, "GB().register(prefix='a*')", "ID", "sa")
    assert pyexecute(r, "GB('ShardsIDReader').run()", "ID", "runonly") == [["1"], []]
    assert sessions(r) == [
        session_entry("sa", regs=[exec_id(6)]),
        session_entry("sb", desc="the b session", refcount=2, regs=[exec_id(1), exec_id(3)]),
    ]
    assert sessions(r, "sessions", "sb", "nope", "sa") == [
        session_entry("sb", desc="the b session", refcount=2, regs=[exec_id(1), exec_id(3)]),
        "Session nope does not exists",
        session_entry("sa", regs=[exec_id(6)]),
    ]
    assert sessions(r, "DEAD") == []
    assert str(error(r, "RG.PYDUMPSESSIONS", "FOO")) == "Unknown option FOO"


def test_pydumpsessions_verbose(r):
    rid = register_one(r, "GB('KeysReader', desc='d').register(prefix='k*')", "ID", "s1")
    full = r.execute_command("RG.DUMPREGISTRATIONS")[0]
    without_pd = full[:8] + full[10:]
    assert len(without_pd) == 10
    expected = session_entry("s1", regs=[without_pd])
    assert sessions(r, "VERBOSE") == [expected]
    assert sessions(r, "verbose", "SESSIONS", "s1") == [expected]
    assert rid == full[1]


def test_dead_session_while_its_execution_runs(r):
    old = register_one(r, GATED, "ID", "s1")
    r.set("k1", "v")
    wait_until(lambda: r.exists("started:k1"), what="the old session's execution to run")
    assert pyexecute(r, "GB().register(prefix='n*')", "ID", "s1", "UPGRADE") == "OK"
    new = [reg["id"] for reg in dump_registrations(r)]
    assert len(new) == 1 and new[0] != old
    assert sessions(r) == [session_entry("s1", regs=new)]
    dead = sessions(r, "DEAD")
    assert len(dead) == 1
    assert dead[0][0:2] == ["ID", "s1"] and dead[0][8:10] == ["dead", "true"], dead
    assert dead[0][4:6] == ["refCount", 1] and dead[0][14:16] == ["registrations", []], dead
    r.set("gate", "1")
    wait_until(lambda: sessions(r, "DEAD") == [], what="the dead session to go")
    assert r.get("finished:k1") == "1"


def test_session_leaves_the_table_when_its_registrations_are_gone(r):
    a, b = register(r, "GB().register(prefix='a*')\nGB().register(prefix='b*')\n", "ID", "s1")
    assert r.execute_command("RG.UNREGISTER", a) == "OK"
    assert sessions(r) == [session_entry("s1", regs=[b])]
    assert registration(r, b)["PD"] == pd("s1", regs=[b])
    assert r.execute_command("RG.UNREGISTER", b) == "OK"
    assert sessions(r) == []
    # the id is free again
    assert pyexecute(r, "GB().register(prefix='c*')", "ID", "s1") == "OK"


# --------------------------------------------------------------------------------------------
# Sessions: ID, UPGRADE, REPLACE_WITH
# --------------------------------------------------------------------------------------------


def test_session_id_is_reserved(r):
    register_one(r, "GB().register(prefix='a*')", "ID", "s1")
    assert str(error(r, "RG.PYEXECUTE", "GB().register(prefix='b*')", "ID", "s1")) == "Session s1 already exists"
    assert str(error(r, "RG.PYEXECUTE", "GB('ShardsIDReader').run()", "ID", "s1")) == "Session s1 already exists"
    assert len(dump_registrations(r)) == 1


def test_upgrade_replaces_the_registrations(r):
    old = register_one(r, "GB().foreach(lambda r: execute('INCR', 'old')).register(prefix='a*')", "ID", "s1")
    assert pyexecute(r, "GB().foreach(lambda r: execute('INCR', 'new')).register(prefix='b*')", "ID", "s1", "upgrade") == "OK"
    regs = dump_registrations(r)
    assert len(regs) == 1 and regs[0]["id"] != old
    assert regs[0]["data"]["args"]["regex"] == "b*"
    assert regs[0]["PD"] == pd("s1", regs=[regs[0]["id"]])
    r.set("a1", "v")
    r.set("b1", "v")
    wait_until(lambda: r.get("new") == "1")
    assert r.get("old") is None


def test_upgrade_without_an_existing_session_creates_it(r):
    rid = register_one(r, "GB().register(prefix='a*')", "UPGRADE", "ID", "fresh")
    assert registration(r, rid)["PD"] == pd("fresh", regs=[rid])


def test_upgrade_may_register_the_same_trigger_again(raw, r):
    register_one(r, "GB('CommandReader').map(lambda x: 'v1').register(trigger='t')", "ID", "s1")
    assert raw.call("RG.TRIGGER", "t") == [b"v1"]
    assert pyexecute(r, "GB('CommandReader').map(lambda x: 'v2').register(trigger='t')", "ID", "s1", "UPGRADE") == "OK"
    assert raw.call("RG.TRIGGER", "t") == [b"v2"]


def test_upgrade_with_a_failing_script_changes_nothing(raw, r):
    old = register_one(r, "GB('CommandReader').map(lambda x: 'v1').register(trigger='t')", "ID", "s1", "DESCRIPTION", "one")
    res = raw.call("RG.PYEXECUTE", "GB('CommandReader').register(trigger='u')\nraise Exception('broken upgrade')",
                   "ID", "s1", "UPGRADE")
    assert type(res) is Error and res.endswith(tb_end("Exception: broken upgrade")), res
    assert [reg["id"] for reg in dump_registrations(r)] == [old]
    assert raw.call("RG.TRIGGER", "t") == [b"v1"]
    assert raw.call("RG.TRIGGER", "u") == Error("ERR subcommand not found")
    assert sessions(r) == [session_entry("s1", desc="one", regs=[old])]


def test_upgrade_refused_while_applying_changes_nothing(raw, r):
    old = register_one(r, "GB('CommandReader').map(lambda x: 'v1').register(trigger='t')", "ID", "s1")
    other = register_one(r, "GB('CommandReader').map(lambda x: 'other').register(trigger='taken')", "ID", "s2")
    res = raw.call("RG.PYEXECUTE",
                   "GB('CommandReader').map(lambda x: 'v2').register(trigger='t')\n"
                   "GB('CommandReader').register(trigger='taken')\n",
                   "ID", "s1", "UPGRADE")
    if type(res) is Error:
        assert res.endswith(tb_end("gears.error: trigger already registered")), res
    else:
        assert isinstance(res, list) and len(res) == 1 and "trigger already registered" in res[0], res
    assert [reg["id"] for reg in dump_registrations(r)] == [old, other]
    assert raw.call("RG.TRIGGER", "t") == [b"v1"]
    assert raw.call("RG.TRIGGER", "taken") == [b"other"]


def test_replace_with(raw, r):
    register_one(r, "GB('CommandReader').map(lambda x: 'v1').register(trigger='t')", "ID", "s1")
    new = register_one(r, "GB('CommandReader').map(lambda x: 'v2').register(trigger='t')", "ID", "s2", "REPLACE_WITH", "s1")
    assert raw.call("RG.TRIGGER", "t") == [b"v2"]
    assert sessions(r) == [session_entry("s2", regs=[new])]
    # without ID the new session gets a random one
    newer = register_one(r, "GB('CommandReader').map(lambda x: 'v3').register(trigger='t')", "REPLACE_WITH", "s2")
    assert raw.call("RG.TRIGGER", "t") == [b"v3"]
    listed = sessions(r)
    assert len(listed) == 1 and re.fullmatch("[0-9a-f]{40}", listed[0][1]) and listed[0][15] == [newer], listed


def test_replace_with_errors_and_rollback(raw, r):
    register_one(r, "GB().register(prefix='a*')", "ID", "s1")
    register_one(r, "GB().register(prefix='b*')", "ID", "s2")
    assert raw.call("RG.PYEXECUTE", "GB().register()", "ID", "s1", "REPLACE_WITH", "s2") == Error(
        "Can not replace an existing session s1 with s2")
    assert raw.call("RG.PYEXECUTE", "GB().register()", "REPLACE_WITH", "nope") == Error(
        "Can not replace with nope, session does not exists.")
    res = raw.call("RG.PYEXECUTE", "GB().register(prefix='c*')\nraise Exception('replace failed')\n", "ID", "s3", "REPLACE_WITH", "s1")
    assert type(res) is Error and res.endswith(tb_end("Exception: replace failed")), res
    assert [s[1] for s in sessions(r)] == ["s1", "s2"]
    assert [reg["data"]["args"]["regex"] for reg in dump_registrations(r)] == ["a*", "b*"]


# --------------------------------------------------------------------------------------------
# RG.PYPROFILE
# --------------------------------------------------------------------------------------------

PROFILED = (
    "def my_profiled_fn(r):\n"
    "    return helper_of_mine(r['key'])\n"
    "def helper_of_mine(k):\n"
    "    return k\n"
    "GB().map(my_profiled_fn).register(prefix='k*')\n"
)


@pytest.mark.module_args("ProfileExecutions", "1")
def test_pyprofile_stats_and_reset(raw, r):
    rid = register_one(r, PROFILED, "ID", "s1")
    r.set("k1", "v")
    wait_stats(r, rid, numSuccess=1)
    report = raw.call("RG.PYPROFILE", "STATS", "s1")
    assert isinstance(report, bytes), report
    assert b"my_profiled_fn" in report and b"helper_of_mine" in report, report
    report = raw.call("RG.PYPROFILE", "stats", "s1", "cumtime")
    assert isinstance(report, bytes) and b"my_profiled_fn" in report, report
    assert raw.call("RG.PYPROFILE", "RESET", "s1") == Status("OK")
    assert type(raw.call("RG.PYPROFILE", "STATS", "s1")) is Error
    r.set("k2", "v")
    wait_stats(r, rid, numSuccess=2)
    report = raw.call("RG.PYPROFILE", "STATS", "s1")
    assert isinstance(report, bytes) and b"my_profiled_fn" in report, report


@pytest.mark.module_args("ProfileExecutions", "1")
def test_pyprofile_on_registered(raw, r):
    register_one(r, "def my_onreg_fn():\n    pass\nGB().register(prefix='k*', onRegistered=my_onreg_fn)\n", "ID", "s1")
    report = wait_until(lambda: (lambda x: isinstance(x, bytes) and x)(raw.call("RG.PYPROFILE", "STATS", "s1")),
                        what="a profile")
    assert b"my_onreg_fn" in report, report


def test_pyprofile_collects_nothing_when_profiling_is_off(raw, r):
    rid = register_one(r, PROFILED, "ID", "s1")
    r.set("k1", "v")
    wait_stats(r, rid, numSuccess=1)
    assert type(raw.call("RG.PYPROFILE", "STATS", "s1")) is Error
    assert raw.call("RG.PYPROFILE", "RESET", "s1") == Status("OK")


def test_pyprofile_errors(raw, r):
    register_one(r, PROFILED, "ID", "s1")
    assert raw.call("RG.PYPROFILE", "STATS", "nope") == Error("session does not exists")
    assert raw.call("RG.PYPROFILE", "RESET", "nope") == Error("session does not exists")
    assert raw.call("RG.PYPROFILE", "FOO", "s1") == Error("Wrong subcommand given to RG.PYPROFILE")
    arity = Error("ERR wrong number of arguments for 'rg.pyprofile' command")
    assert raw.call("RG.PYPROFILE") == arity
    assert raw.call("RG.PYPROFILE", "STATS") == arity
    assert raw.call("RG.PYPROFILE", "RESET", "s1", "extra") == arity
    assert raw.call("RG.PYPROFILE", "STATS", "s1", "order", "extra") == arity


# --------------------------------------------------------------------------------------------
# INFO
# --------------------------------------------------------------------------------------------


def info_sections(raw, section):
    text = raw.call("INFO", section).decode()
    out = {}
    current = None
    for line in text.split("\r\n"):
        if line.startswith("# "):
            current = line[2:]
            out[current] = []
        elif line and current is not None:
            out[current].append(line)
    return out


@pytest.mark.parametrize("section", ["rg", "modules", "everything"])
def test_info(raw, r, section):
    rid = register_one(r, "GB('KeysReader', desc='d').register(prefix='k*')", "ID", "s1")
    r.set("k1", "v")
    wait_stats(r, rid, numSuccess=1)
    eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    wait_status(r, eid, "done")
    info = info_sections(raw, section)
    assert f"rg_nexecutions:{len(dump_executions(r))}" in info["rg"], info["rg"]
    assert "rg_nregistrations:1" in info["rg"], info["rg"]
    regs = info["rg_regisrations"]
    assert len(regs) == 1 and regs[0].startswith(f"rg_{rid}:"), regs
    fields = regs[0].split(":", 1)[1]
    for part in ["desc=d", "reader=KeysReader", "mode=async", "numTriggered=1", "numSuccess=1", "numFailures=0",
                 "numAborted=0", "lastError=None", "PD=" + pd("s1", regs=[rid]).replace(",", "|")]:
        assert part in fields, (part, fields)
    assert info["rg_plugins"] == ["rg_GearsPythonPlugin:version=10000"]
    names = [x.split(":")[0] for x in info["rg_python_stats"]]
    assert names == ["rg_TotalAllocated", "rg_PeakAllocated", "rg_CurrAllocated"]
    assert info["rg_python_requirements"] == []
    assert len(info["rg_python_sessions"]) == 1 and "s1" in info["rg_python_sessions"][0], info["rg_python_sessions"]


def test_info_without_registrations(raw):
    info = info_sections(raw, "rg")
    assert "rg_nregistrations:0" in info["rg"] and "rg_nexecutions:0" in info["rg"], info
    assert info.get("rg_regisrations", []) == []
    assert info.get("rg_python_sessions", []) == []


# --------------------------------------------------------------------------------------------
# registerTE
# --------------------------------------------------------------------------------------------


def test_register_te_calls_the_callback_every_period_with_the_session_globals(r):
    assert pyexecute(r, (
        "n = 0\n"
        "def tick():\n"
        "    global n\n"
        "    n += 1\n"
        "    execute('SET', 'ticks', str(n))\n"
        "execute('SET', 'ret', repr(registerTE(1, tick)))\n"
    )) == "OK"
    assert r.get("ret") == "True"
    wait_until(lambda: int(r.get("ticks") or 0) >= 3, what="three ticks")


def test_register_time_event_alias_and_run_from_a_timer(r):
    assert pyexecute(r, (
        "done = []\n"
        "def tick():\n"
        "    if not done:\n"
        "        done.append(1)\n"
        "        GB('ShardsIDReader').foreach(lambda x: execute('SET', 'ran', '1')).run()\n"
        "redisgears.registerTimeEvent(1, tick)\n"
    )) == "OK"
    wait_until(lambda: r.get("ran") == "1", what="the run() started by the timer")


@pytest.mark.parametrize("call, msg", [
    ("registerTE(1)", "not enough arguments for time event"),
    ("registerTE()", "not enough arguments for time event"),
    ("registerTE(1, f, 'k', 4)", "not enough arguments for time event"),
    ("registerTE(1, 'f')", "callback must be a function"),
    ("registerTE('1', f)", "time argument must be a long"),
    ("registerTE(1.5, f)", "time argument must be a long"),
])
def test_register_te_errors(raw, call, msg):
    assert_gears_error(raw, "def f():\n    pass\n" + call + "\n", msg)


def test_register_te_with_key(r):
    script = "def tick():\n    execute('INCR', 'ticks')\nexecute('SET', 'ret', repr(registerTE(1, tick, 'tek')))\n"
    assert pyexecute(r, script) == "OK"
    assert r.get("ret") == "True"
    assert r.type("tek") == "rg_timeev"
    assert pyexecute(r, script) == "OK"
    assert r.get("ret") == "False"  # the key exists: nothing created
    wait_until(lambda: int(r.get("ticks") or 0) >= 2, what="ticks")
    assert r.delete("tek") == 1
    stopped_at = r.get("ticks")
    time.sleep(2.5)  # the timer is gone: no tick can come, whatever the timing
    assert r.get("ticks") == stopped_at


def test_register_te_with_a_non_str_key_name_makes_no_key(r):
    assert pyexecute(r, "def tick():\n    execute('INCR', 'ticks')\nexecute('SET', 'ret', repr(registerTE(1, tick, 5)))\n") == "OK"
    assert r.get("ret") == "True"
    wait_until(lambda: int(r.get("ticks") or 0) >= 1)
    assert sorted(r.keys()) == ["ret", "ticks"]


def test_register_te_stops_when_the_callback_raises(r):
    assert pyexecute(r, "def tick():\n    execute('INCR', 'ticks')\n    raise Exception('tick failed')\nregisterTE(1, tick)\n") == "OK"
    wait_until(lambda: r.get("ticks") == "1", what="the first tick")
    time.sleep(2.5)  # stopped after the error: no second tick, whatever the timing
    assert r.get("ticks") == "1"


# --------------------------------------------------------------------------------------------
# onRegistered
# --------------------------------------------------------------------------------------------


def test_on_registered_runs_on_the_session_globals(server, r):
    assert pyexecute(r, (
        "x = 5\n"
        "def onreg(*args):\n"
        "    log('onRegistered saw x=%s and %d arguments' % (x, len(args)))\n"
        "GB().register(prefix='k*', onRegistered=onreg)\n"
    )) == "OK"
    server.wait_log("GEARS: onRegistered saw x=5 and 0 arguments")


def test_on_registered_that_raises_is_only_logged(server, r):
    rid = register_one(r, (
        "def onreg():\n"
        "    raise Exception('onreg exploded')\n"
        "GB().foreach(lambda r: execute('INCR', 'n')).register(prefix='k*', onRegistered=onreg)\n"
    ))
    server.wait_log("onreg exploded")
    r.set("k1", "v")
    wait_stats(r, rid, numSuccess=1)
    assert r.get("n") == "1"


def test_on_registered_coroutine_is_logged_and_ignored(server, r):
    rid = register_one(r, "async def onreg():\n    pass\nGB().register(prefix='k*', onRegistered=onreg)\n")
    r.set("k1", "v")
    wait_stats(r, rid, numSuccess=1)


@pytest.mark.module_args("ExecutionTimeLimit", "1000")
def test_on_registered_that_loops_forever_is_stopped_by_the_time_limit(server, r):
    rid = register_one(r, (
        "def onreg():\n"
        "    while True:\n"
        "        pass\n"
        "GB().foreach(lambda r: execute('INCR', 'n')).register(prefix='k*', onRegistered=onreg)\n"
    ))
    r.set("k1", "v")
    wait_stats(r, rid, numSuccess=1)
    assert r.get("n") == "1"
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: 'alive').run()") == [["alive"], []]


def test_on_registered_that_loops_forever_does_not_stop_the_server(server, r):
    replies = []
    c = server.client()

    def send():
        replies.append(pyexecute(c, "def onreg():\n    while True:\n        pass\nGB().register(prefix='k*', onRegistered=onreg)\n"))

    t = threading.Thread(target=send, daemon=True)
    t.start()
    # Whatever happens to the endless onRegistered, Redis keeps serving other clients.
    for _ in range(5):
        assert r.ping()
        assert r.set("other", "v")
        time.sleep(0.2)
    t.join(timeout=WAIT_DEADLINE)
    assert replies == ["OK"]
    assert len(dump_registrations(r)) == 1
