"""Module load arguments (docs/commands.md#load-arguments) and the MaxExecutions limit (docs/commands.md#rgdumpexecutions)."""

import threading

import pytest

from conftest import (
    NO_EXEC,
    blocked_clients,
    dump_executions,
    error_text,
    exec_id,
    gate_script,
    id_number,
    pyexecute,
    wait_status,
    wait_until,
)

TRIVIAL = "GB('ShardsIDReader').run()"


# ------------------------------------------------------------------------------------------
# MaxExecutions
# ------------------------------------------------------------------------------------------


@pytest.mark.module_args("MaxExecutions", "5")
def test_max_executions_evicts_oldest(r):
    ids = []
    for _ in range(8):
        eid = pyexecute(r, TRIVIAL, "UNBLOCKING")
        assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1"], []]
        ids.append(eid)
    assert ids == [exec_id(i) for i in range(8)]
    assert dump_executions(r) == [(eid, "done", 0) for eid in ids[3:]]
    for eid in ids[:3]:
        assert error_text(r, "RG.GETRESULTS", eid) == NO_EXEC
    for eid in ids[3:]:
        assert r.execute_command("RG.GETRESULTS", eid) == [["1"], []]


@pytest.mark.module_args("MaxExecutions", "10")
def test_max_executions_many_runs(r):
    n = 1010
    p = r.pipeline(transaction=False)
    for _ in range(n):
        p.execute_command("RG.PYEXECUTE", TRIVIAL, "UNBLOCKING")
    ids = p.execute()
    nums = [id_number(e) for e in ids]
    assert nums == sorted(nums) and len(set(nums)) == n
    last = ids[-10:]
    for eid in last:
        assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1"], []]
    wait_until(lambda: [e for e, _, _ in dump_executions(r)] == last,
               what="the executions list to hold exactly the 10 newest executions")
    assert r.ping()
    assert len(dump_executions(r)) == 10
    assert error_text(r, "RG.GETRESULTS", ids[0]) == NO_EXEC


@pytest.mark.module_args("MaxExecutions", "2")
def test_waiter_on_evicted_running_execution_gets_reply(server, r):
    eid = pyexecute(r, gate_script("gate_ev", result="evicted-but-answered"), "UNBLOCKING")
    wait_status(r, eid, "running")
    out = {}

    def waiter():
        out["reply"] = server.client().execute_command("RG.GETRESULTSBLOCKING", eid)

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: blocked_clients(r) == 1, what="the waiter to block")
    others = []
    for _ in range(3):
        e = pyexecute(r, TRIVIAL, "UNBLOCKING")
        r.execute_command("RG.GETRESULTSBLOCKING", e)
        others.append(e)
    r.set("gate_ev", "1")
    t.join(timeout=120)
    assert not t.is_alive()
    assert out["reply"] == [["evicted-but-answered"], []]
    # once it ended, the evicted execution is dropped; the two newest stay
    wait_until(lambda: [e for e, _, _ in dump_executions(r)] == others[-2:],
               what="only the two newest executions to stay listed")


@pytest.mark.module_args("MaxExecutions", "0")
def test_max_executions_zero_is_unlimited(r):
    ids = [pyexecute(r, TRIVIAL, "UNBLOCKING") for _ in range(30)]
    for eid in ids:
        r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert [e for e, _, _ in dump_executions(r)] == ids


@pytest.mark.module_args("maxexecutions", "3")
def test_builtin_names_case_insensitive_at_load(r):
    ids = []
    for _ in range(5):
        ids.append(pyexecute(r, TRIVIAL, "UNBLOCKING"))
        r.execute_command("RG.GETRESULTSBLOCKING", ids[-1])
    assert [e for e, _, _ in dump_executions(r)] == ids[2:]


# ------------------------------------------------------------------------------------------
# ExecutionThreads, Plugin, free keys, bad values
# ------------------------------------------------------------------------------------------


@pytest.mark.module_args("ExecutionThreads", "2")
def test_execution_threads_two_loads_and_runs_in_parallel(r):
    assert pyexecute(r, TRIVIAL) == [["1"], []]
    a = pyexecute(r, gate_script("gate_a", result="a"), "UNBLOCKING")
    b = pyexecute(r, gate_script("gate_b", result="b"), "UNBLOCKING")
    # two workers: both executions run at the same time
    wait_status(r, a, "running")
    wait_status(r, b, "running")
    r.set("gate_a", "1")
    r.set("gate_b", "1")
    assert r.execute_command("RG.GETRESULTSBLOCKING", a) == [["a"], []]
    assert r.execute_command("RG.GETRESULTSBLOCKING", b) == [["b"], []]


@pytest.mark.module_args("ExecutionThreads", "1")
def test_single_worker_still_serves_everything(r):
    for i in range(10):
        assert pyexecute(r, f"GB('ShardsIDReader').map(lambda x: {i}).run()") == [[str(i)], []]
    assert r.ping()


def test_default_three_workers_run_in_parallel(r):
    ids = [pyexecute(r, gate_script(f"gate_{i}", result=str(i)), "UNBLOCKING") for i in range(3)]
    for eid in ids:
        wait_status(r, eid, "running")
    for i in range(3):
        r.set(f"gate_{i}", "1")
    for i, eid in enumerate(ids):
        assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [[str(i)], []]


def _assert_load_fails(start_server, *args):
    s = start_server(*args, expect_exit=True)
    rc = s.wait_exit(timeout=60)
    assert rc is not None, f"redis-server with {args} should have exited; log:\n{s.log_tail()}"
    assert rc != 0, f"redis-server with {args} exited with 0; log:\n{s.log_tail()}"
    return s.log()


def test_execution_threads_zero_fails_load(start_server):
    log = _assert_load_fails(start_server, "ExecutionThreads", "0")
    assert "executionthreads" in log.lower(), log


def test_invalid_values_fail_load(start_server):
    _assert_load_fails(start_server, "ExecutionThreads", "abc")
    _assert_load_fails(start_server, "MaxExecutions", "notanumber")


def test_missing_value_fails_load(start_server):
    _assert_load_fails(start_server, "MaxExecutions")


@pytest.mark.module_args("Plugin", "/some/path/gears_python.so")
def test_plugin_accepted(r):
    assert pyexecute(r, TRIVIAL) == [["1"], []]


@pytest.mark.module_args("MyKey", "MyValue", "Plugin", "/a", "Plugin", "/b", "ExecutionThreads", "2",
                         "MaxExecutions", "100", "CreateVenv", "0", "DownloadDeps", "0",
                         "PythonAttemptTraceback", "1")
def test_unknown_and_compat_keys_accepted(r):
    assert pyexecute(r, TRIVIAL) == [["1"], []]
    assert r.ping()


def test_module_identity(r):
    mods = r.execute_command("MODULE", "LIST")
    entries = [dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m for m in mods]
    rg = [m for m in entries if m.get("name") == "rg"]
    assert len(rg) == 1, entries
    assert int(rg[0]["ver"]) == 10213
