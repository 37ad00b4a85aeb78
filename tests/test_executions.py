"""Execution lifecycle: RG.DUMPEXECUTIONS, RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.DROPEXECUTION,
many waiters, disconnecting waiters (docs/commands.md#rggetresults to #rgdropexecution)."""

import threading

import redis

from conftest import (
    DROP_RUNNING,
    NO_EXEC,
    STILL_RUNNING,
    Error,
    Status,
    blocked_clients,
    dump_executions,
    error_text,
    exec_id,
    gate_script,
    pyexecute,
    status_of,
    wait_status,
    wait_until,
)

UNKNOWN = exec_id(999)


def test_dumpexecutions_empty(r, raw):
    assert r.execute_command("RG.DUMPEXECUTIONS") == []
    assert raw.call("RG.DUMPEXECUTIONS", "ignored", "args") == []


def test_dumpexecutions_entry_layout(raw):
    eid = raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING")
    raw.call("RG.GETRESULTSBLOCKING", eid)
    dump = raw.call("RG.DUMPEXECUTIONS")
    assert dump == [[b"executionId", eid, b"status", b"done", b"registered", 0]]
    # extra arguments are ignored
    assert raw.call("RG.DUMPEXECUTIONS", "foo") == dump


def test_dumpexecutions_oldest_first(r):
    ids = [pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING") for _ in range(5)]
    for eid in ids:
        r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert dump_executions(r) == [(eid, "done", 0) for eid in ids]


def test_getresults_done(r, raw):
    eid = pyexecute(r, "GB('PythonReader').run(lambda: iter([1, 'a', '+OK']))", "UNBLOCKING")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1", "a", "OK"], []]
    assert r.execute_command("RG.GETRESULTS", eid) == [["1", "a", "OK"], []]
    # extra arguments of RG.GETRESULTS are ignored
    assert r.execute_command("RG.GETRESULTS", eid, "ignored") == [["1", "a", "OK"], []]
    assert raw.call("RG.GETRESULTS", eid) == [[b"1", b"a", Status("OK")], []]


def test_getresults_with_errors(r):
    eid = pyexecute(r, "GB('ShardsIDReader').map(lambda r: 1/0).run()", "UNBLOCKING")
    results, errors = r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert results == []
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0]
    # an execution that ends with errors is still 'done'
    assert status_of(r, eid) == "done"


def test_unknown_id_errors(raw):
    for cmd in ("RG.GETRESULTS", "RG.GETRESULTSBLOCKING", "RG.DROPEXECUTION"):
        assert raw.call(cmd, UNKNOWN) == Error(NO_EXEC), cmd
        assert raw.call(cmd, "garbage") == Error(NO_EXEC), cmd
        assert raw.call(cmd, "") == Error(NO_EXEC), cmd
    assert raw.call("PING") == Status("PONG")


def test_wrong_arity(raw):
    assert raw.call("RG.GETRESULTS") == Error("ERR wrong number of arguments for 'rg.getresults' command")
    assert raw.call("RG.GETRESULTSBLOCKING") == Error(
        "ERR wrong number of arguments for 'rg.getresultsblocking' command")
    assert raw.call("RG.GETRESULTSBLOCKING", UNKNOWN, "x") == Error(
        "ERR wrong number of arguments for 'rg.getresultsblocking' command")
    assert raw.call("RG.DROPEXECUTION") == Error(
        "ERR wrong number of arguments for 'rg.dropexecution' command")
    assert raw.call("RG.DROPEXECUTION", UNKNOWN, "x") == Error(
        "ERR wrong number of arguments for 'rg.dropexecution' command")


def test_dropexecution(r):
    eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert error_text(r, "RG.GETRESULTS", eid) == NO_EXEC
    assert error_text(r, "RG.GETRESULTSBLOCKING", eid) == NO_EXEC
    assert error_text(r, "RG.DROPEXECUTION", eid) == NO_EXEC
    assert dump_executions(r) == []
    # the id is never reused
    assert pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING") == exec_id(1)


def test_running_execution_lifecycle(r):
    eid = pyexecute(r, gate_script("gate1"), "UNBLOCKING")
    assert eid == exec_id(0)
    # listed while it runs, with a not-finished status
    st = status_of(r, eid)
    assert st in ("created", "running"), st
    wait_status(r, eid, "running")
    assert dump_executions(r) == [(eid, "running", 0)]
    assert error_text(r, "RG.GETRESULTS", eid) == STILL_RUNNING
    assert error_text(r, "RG.DROPEXECUTION", eid) == DROP_RUNNING
    # Redis keeps serving clients while the execution runs
    assert r.ping()
    r.set("gate1", "1")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["released"], []]
    assert status_of(r, eid) == "done"
    assert r.execute_command("RG.GETRESULTS", eid) == [["released"], []]
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert dump_executions(r) == []


def test_getresultsblocking_waits(server, r):
    eid = pyexecute(r, gate_script("gate2"), "UNBLOCKING")
    out = {}

    def waiter():
        c = server.client()
        out["reply"] = c.execute_command("RG.GETRESULTSBLOCKING", eid)

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: blocked_clients(r) == 1, what="the waiter to block")
    assert "reply" not in out
    r.set("gate2", "1")
    t.join(timeout=120)
    assert not t.is_alive()
    assert out["reply"] == [["released"], []]
    assert r.execute_command("RG.GETRESULTS", eid) == [["released"], []]


def test_blocking_pyexecute_is_listed_while_running(server, r):
    out = {}

    def runner():
        c = server.client()
        out["reply"] = c.execute_command("RG.PYEXECUTE", gate_script("gate3"))

    t = threading.Thread(target=runner)
    t.start()
    listed = wait_until(lambda: dump_executions(r), what="the blocking execution to be listed")
    assert len(listed) == 1
    eid, st, reg = listed[0]
    assert eid == exec_id(0) and st in ("created", "running") and reg == 0
    assert error_text(r, "RG.DROPEXECUTION", eid) == DROP_RUNNING
    r.set("gate3", "1")
    t.join(timeout=120)
    assert not t.is_alive()
    assert out["reply"] == [["released"], []]
    # dropped right after its reply
    wait_until(lambda: dump_executions(r) == [], what="the blocking execution to be dropped")


def test_twenty_waiters_get_the_same_reply(server, r):
    eid = pyexecute(r, gate_script("gate4", result="same-for-all"), "UNBLOCKING")
    n = 20
    replies = [None] * n
    failures = []

    def waiter(i):
        try:
            c = server.client()
            replies[i] = c.execute_command("RG.GETRESULTSBLOCKING", eid)
        except Exception as e:  # reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    wait_until(lambda: blocked_clients(r) == n, what=f"{n} clients to block")
    assert all(x is None for x in replies)
    r.set("gate4", "1")
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert replies == [[["same-for-all"], []]] * n
    assert blocked_clients(r) == 0
    assert r.execute_command("RG.GETRESULTS", eid) == [["same-for-all"], []]


def test_waiters_of_done_execution_answered_at_once(r):
    eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    for _ in range(5):
        assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1"], []]


def test_disconnect_while_blocked_in_getresultsblocking(server, r):
    eid = pyexecute(r, gate_script("gate5"), "UNBLOCKING")
    raw = server.raw()
    raw.send("RG.GETRESULTSBLOCKING", eid)
    wait_until(lambda: blocked_clients(r) == 1, what="the raw client to block")
    before = int(r.info("clients")["connected_clients"])
    raw.close()
    wait_until(lambda: int(r.info("clients")["connected_clients"]) == before - 1,
               what="the server to notice the disconnect")
    assert blocked_clients(r) == 0
    assert r.ping()
    r.set("gate5", "1")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["released"], []]
    assert r.execute_command("RG.GETRESULTS", eid) == [["released"], []]
    assert r.ping()


def test_disconnect_while_blocked_in_pyexecute(server, r):
    raw = server.raw()
    raw.send("RG.PYEXECUTE", gate_script("gate6"))
    listed = wait_until(lambda: dump_executions(r), what="the blocking execution to be listed")
    eid = listed[0][0]
    wait_until(lambda: blocked_clients(r) == 1, what="the raw client to block")
    raw.close()
    wait_until(lambda: blocked_clients(r) == 0, what="the server to notice the disconnect")
    assert r.ping()
    r.set("gate6", "1")
    # a blocking run is still dropped once it ends, even though its client is gone
    wait_until(lambda: dump_executions(r) == [], what="the orphaned execution to be dropped")
    assert error_text(r, "RG.GETRESULTS", eid) == NO_EXEC
    # and the server keeps running executions
    assert pyexecute(r, "GB('ShardsIDReader').run()") == [["1"], []]
    assert r.ping()


def test_waiter_on_dropped_execution_id(r):
    eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)
    r.execute_command("RG.DROPEXECUTION", eid)
    assert error_text(r, "RG.GETRESULTSBLOCKING", eid) == NO_EXEC


def test_concurrent_unblocking_runs(server, r):
    """Several clients create executions at the same time; every id is distinct and every result right."""
    n = 10
    ids = [None] * n

    def creator(i):
        c = server.client()
        eid = pyexecute(c, f"GB('ShardsIDReader').map(lambda r: {i}).run()", "UNBLOCKING")
        ids[i] = (eid, c.execute_command("RG.GETRESULTSBLOCKING", eid))

    threads = [threading.Thread(target=creator, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert len({eid for eid, _ in ids}) == n
    for i, (eid, res) in enumerate(ids):
        assert res == [[str(i)], []]
    assert sorted(e for e, _, _ in dump_executions(r)) == sorted(eid for eid, _ in ids)


def test_getresults_from_other_connection_and_after_error(server, r):
    eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    other = server.client()
    assert other.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1"], []]
    try:
        other.execute_command("RG.GETRESULTS", UNKNOWN)
    except redis.ResponseError as e:
        assert str(e) == NO_EXEC
    assert other.execute_command("RG.GETRESULTS", eid) == [["1"], []]
