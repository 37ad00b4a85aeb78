"""Sessions and their home workers (docs/architecture.md, "Sessions and homes"): script bodies
never wait for a busy worker, executions wait `created` for their home, a session's globals are
shared by its executions, sessions run in parallel, and calls on behalf of the main thread
(the RG.TESTSYNC test hook) never deadlock."""

import threading
import time

import pytest
import redis

from conftest import Error, dump_executions, pyexecute, status_of, wait_status, wait_until

# An execution that runs pure Python until it is aborted.
ENDLESS = (
    "def spin(r):\n"
    "    while True:\n"
    "        pass\n"
    "GB('ShardsIDReader').map(spin).run()\n"
)

# An execution stuck in one native call that never returns to the bytecode loop.
NATIVE = "import itertools\nGB('ShardsIDReader').map(lambda r: sum(itertools.repeat(1))).run()\n"


def get_status(r, eid):
    reply = r.execute_command("RG.GETEXECUTION", eid)
    plan = reply[0][3]
    return dict(zip(plan[0::2], plan[1::2]))["status"]


def start_endless(r, script=ENDLESS):
    eid = pyexecute(r, script, "UNBLOCKING")
    wait_status(r, eid, "running")
    return eid


def abort_all(r, ids):
    """Aborts running executions: each ends `done`, with the abort as its error."""
    for eid in ids:
        assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    for eid in ids:
        wait_status(r, eid, "done")


@pytest.mark.module_args("ExecutionThreads", "1")
def test_unblocking_answers_at_once_while_the_only_worker_runs_an_endless_execution(server, r):
    endless = start_endless(r)
    second = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert second != endless
    assert status_of(r, second) == "created"
    assert get_status(r, second) == "created"
    assert r.execute_command("RG.ABORTEXECUTION", second) == "OK"
    assert status_of(r, second) == "aborted"
    assert get_status(r, second) == "aborted"
    assert status_of(r, endless) == "running"
    abort_all(r, [endless])
    # The aborted one never runs; the worker is free again.
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda r: 'ran').run()") == [["ran"], []]


@pytest.mark.module_args("ExecutionThreads", "2")
def test_twenty_unblocking_scripts_get_their_ids_while_every_worker_is_busy(server, r):
    busy = [start_endless(r) for _ in range(2)]
    ids = [None] * 20
    errors = []

    def send(i):
        try:
            ids[i] = pyexecute(server.client(), f"GB('ShardsIDReader').map(lambda r: {i}).run()", "UNBLOCKING")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert all(ids) and len(set(ids)) == 20, ids
    statuses = {eid: st for eid, st, _ in dump_executions(r)}
    assert all(statuses[eid] == "created" for eid in ids), statuses
    # At most ExecutionThreads executions run Python at once.
    assert list(statuses.values()).count("running") == 2
    abort_all(r, busy)
    # Once the workers are free, the queued executions run, each with its own result.
    for i, eid in enumerate(ids):
        wait_status(r, eid, "done")
        assert r.execute_command("RG.GETRESULTS", eid) == [[str(i)], []]


@pytest.mark.module_args("ExecutionThreads", "1")
def test_blocking_script_waits_created_behind_the_running_execution_and_can_be_aborted(server, r):
    endless = start_endless(r)
    results = []
    c = server.client()
    t = threading.Thread(target=lambda: results.append(pyexecute(c, "GB('ShardsIDReader').map(lambda r: 'late').run()")))
    t.start()
    created = wait_until(lambda: [e for e, st, _ in dump_executions(r) if st == "created"], what="a created execution")
    assert r.execute_command("RG.ABORTEXECUTION", created[0]) == "OK"
    t.join(timeout=120)
    assert results == [[[], []]]
    abort_all(r, [endless])


def test_session_globals_are_shared_by_its_executions(r):
    script = (
        "seen = []\n"
        "def second(r):\n"
        "    seen.append('second')\n"
        "    execute('SET', 'seen', ','.join(seen))\n"
        "    return r\n"
        "def first(r):\n"
        "    seen.append('first')\n"
        "    GB('ShardsIDReader').map(second).run()\n"
        "    return len(seen)\n"
        "seen.append('body')\n"
        "GB('ShardsIDReader').map(first).run()\n"
    )
    assert pyexecute(r, script) == [["2"], []]
    assert wait_until(lambda: r.get("seen")) == "body,first,second"


def test_sessions_do_not_share_globals(r):
    assert pyexecute(r, "x = 1\nGB('ShardsIDReader').map(lambda r: x).run()") == [["1"], []]
    out = pyexecute(r, "GB('ShardsIDReader').map(lambda r: 'x' in globals()).run()")
    assert out == [["False"], []]


@pytest.mark.module_args("ExecutionThreads", "2")
def test_two_sessions_run_in_parallel(server, r):
    # Each waits for the other's key: they can only both finish if they run at the same time.
    def script(mine, theirs):
        return (
            "import time\n"
            "def meet(r):\n"
            f"    execute('SET', {mine!r}, '1')\n"
            "    for _ in range(6000):\n"
            f"        if execute('EXISTS', {theirs!r}):\n"
            "            return 'met'\n"
            "        time.sleep(0.01)\n"
            "    return 'alone'\n"
            "GB('ShardsIDReader').map(meet).run()\n"
        )

    results = {}

    def run(name, mine, theirs):
        results[name] = pyexecute(server.client(), script(mine, theirs))

    threads = [threading.Thread(target=run, args=("a", "a", "b")), threading.Thread(target=run, args=("b", "b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {"a": [["met"], []], "b": [["met"], []]}


# Calls on behalf of the main thread --------------------------------------------------------------

HOOKS = ("TestHooks", "1")


def test_sync_hook_is_off_by_default(r):
    with pytest.raises(redis.ResponseError, match="TestHooks 1"):
        r.execute_command("RG.TESTSYNC", "1")


@pytest.mark.module_args(*HOOKS)
def test_sync_call_runs_body_and_execution_with_execute_atomic_and_run(server, r):
    script = (
        "def write(r):\n"
        "    with atomic():\n"
        "        execute('SET', 'a', '1')\n"
        "        execute('INCR', 'b')\n"
        "    return execute('GET', 'a')\n"
        "GB('ShardsIDReader').map(write).run()\n"
    )
    assert r.execute_command("RG.TESTSYNC", script) == [["1"], []]
    assert r.mget("a", "b") == ["1", "1"]
    assert r.execute_command("RG.TESTSYNC", "x = 1") == "OK"
    # run() from a callback of the call starts an ordinary execution, after the call.
    started = "GB('ShardsIDReader').map(lambda r: GB('ShardsIDReader').foreach(lambda x: execute('SET', 'later', '1')).run()).run()"
    assert r.execute_command("RG.TESTSYNC", started)[1] == []
    assert wait_until(lambda: r.get("later")) == "1"
    raw = server.raw()
    err = raw.call("RG.TESTSYNC", "1/0")
    assert type(err) is Error and "ZeroDivisionError" in err, err
    # The database the client selected is the one used, and stays selected.
    raw.call("SELECT", "3")
    assert raw.call("RG.TESTSYNC", "execute('SET', 'in3', 'yes')") == "OK"
    assert raw.call("GET", "in3") == b"yes"
    assert r.get("in3") is None


@pytest.mark.module_args("ExecutionThreads", "1", *HOOKS)
def test_sync_call_preempts_a_home_busy_in_python(server, r):
    endless = start_endless(r)
    assert r.execute_command("RG.TESTSYNC", "GB('ShardsIDReader').map(lambda r: execute('INCR', 'x')).run()") == [["1"], []]
    assert r.get("x") == "1"
    assert status_of(r, endless) == "running"
    abort_all(r, [endless])


@pytest.mark.module_args("ExecutionThreads", "1", *HOOKS)
def test_sync_call_serves_while_its_home_waits_for_the_redis_lock(server, r):
    # The home is inside execute() of a long-running execution, waiting for the lock that the
    # main thread holds during the call: it must serve the call meanwhile.
    writer = (
        "def w(r):\n"
        "    for i in range(100000):\n"
        "        execute('INCR', 'n')\n"
        "    return 'w'\n"
        "GB('ShardsIDReader').map(w).run()\n"
    )
    eid = pyexecute(r, writer, "UNBLOCKING")
    wait_until(lambda: int(r.get("n") or 0) > 10, what="the writer to start")
    for _ in range(20):
        assert r.execute_command("RG.TESTSYNC", "execute('INCR', 'sync')") == "OK"
    assert r.get("sync") == "20"
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"


@pytest.mark.module_args("ExecutionThreads", "1", *HOOKS)
def test_sync_call_to_a_home_stuck_in_native_code_errors_after_a_bound(server, r):
    stuck = start_endless(r, NATIVE)
    raw = server.raw()
    err = raw.call("RG.TESTSYNC", "GB('ShardsIDReader').run()")
    assert type(err) is Error and "did not take the call" in err, err
    assert r.ping()
    # Aborted, the stuck worker is replaced (as for any execution) and calls work again.
    assert r.execute_command("RG.ABORTEXECUTION", stuck) == "OK"
    assert r.execute_command("RG.TESTSYNC", "GB('ShardsIDReader').map(lambda r: 'back').run()") == [["back"], []]


@pytest.mark.module_args("ExecutionThreads", "1", *HOOKS)
def test_sync_call_that_loops_forever_is_stopped(server, r):
    raw = server.raw()
    err = raw.call("RG.TESTSYNC", "while True:\n    pass\n")
    assert type(err) is Error, err
    assert r.ping()
    assert r.execute_command("RG.TESTSYNC", "GB('ShardsIDReader').map(lambda r: 'ok').run()") == [["ok"], []]


@pytest.mark.module_args("ExecutionThreads", "1")
def test_executions_waiting_for_a_worker_lost_in_native_code_are_answered(server, r):
    # The first execution waits (in Python) for a key, then enters a native call that never
    # returns; the second waits `created` behind it on the same home.
    first = pyexecute(r, (
        "import itertools, time\n"
        "def f(r):\n"
        "    while not execute('EXISTS', 'go'):\n"
        "        time.sleep(0.01)\n"
        "    execute('SET', 'entered', '1')\n"
        "    return sum(itertools.repeat(1))\n"
        "GB('ShardsIDReader').map(f).run()\n"
    ), "UNBLOCKING")
    wait_status(r, first, "running")
    second = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert status_of(r, second) == "created"
    r.set("go", "1")
    wait_until(lambda: r.exists("entered"), what="the first execution to enter native code")
    time.sleep(0.5)  # the two instructions from its SET into sum()
    assert r.execute_command("RG.ABORTEXECUTION", first) == "OK"
    # Its objects are in the lost interpreter: it ends aborted, with the worker's error.
    wait_status(r, second, "aborted")
    results, errors = r.execute_command("RG.GETRESULTS", second)
    assert results == [] and len(errors) == 1 and "stuck in native code" in errors[0], errors
    # The replacement serves new sessions.
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda r: 'new').run()") == [["new"], []]
