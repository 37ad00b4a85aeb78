"""Runaway scripts: endless loops, sleeps, native loops, deep recursion and memory bombs must end
(abort, disconnect, ExecutionTimeLimit, stuck-worker watchdog, PythonMemoryLimit) and leave a
server that still runs scripts (docs/commands.md#rgabortexecution, docs/commands.md#load-arguments, docs/sandbox.md).

No timing thresholds: every wait is a polling loop with a generous deadline.
"""

import threading
import time

import pytest

from conftest import (
    REPLY_DEADLINE,
    Error,
    RawConnection,
    Status,
    call,
    dump_executions,
    status_of,
    wait_status,
    wait_until,
)

SPIN_PLAIN = (
    "def spin(x):\n"
    "    execute('SET', 'spinning', '1')\n"
    "    while True:\n"
    "        pass\n"
)

SPIN_CATCH_ALL = (
    "def spin(x):\n"
    "    execute('SET', 'spinning', '1')\n"
    "    while True:\n"
    "        try:\n"
    "            while True:\n"
    "                pass\n"
    "        except BaseException:\n"
    "            pass\n"
)

SANE = "GB('ShardsIDReader').map(lambda x: 'sane').run()"


def raw(server, timeout=REPLY_DEADLINE):
    return RawConnection(server.port, timeout=timeout)


def assert_sane(server, times=1):
    for _ in range(times):
        assert call(server, "RG.PYEXECUTE", SANE) == [[b"sane"], []]


def results(server, eid):
    return call(server, "RG.GETRESULTSBLOCKING", eid)


def error_strings(reply):
    assert isinstance(reply, list) and len(reply) == 2, reply
    return [e.decode() if isinstance(e, bytes) else str(e) for e in reply[1]]


def start_unblocking(server, script):
    eid = call(server, "RG.PYEXECUTE", script, "UNBLOCKING")
    assert isinstance(eid, bytes), eid
    return eid.decode()


# ----------------------------------------------------------------------------------------------
# RG.ABORTEXECUTION
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spin", [SPIN_PLAIN, SPIN_CATCH_ALL], ids=["plain", "except_BaseException"])
def test_abort_endless_loop_in_step(server, r, spin):
    eid = start_unblocking(server, spin + "GB('ShardsIDReader').map(spin).run()\n")
    wait_until(lambda: r.get("spinning") == "1", what="the step to start spinning")
    assert status_of(r, eid) == "running"

    assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
    wait_status(r, eid, "done")
    reply = results(server, eid)
    assert reply[0] == []
    errors = error_strings(reply)
    assert len(errors) == 1, errors
    assert "forcestopped" in errors[0] and "Execution was aborted" in errors[0], errors
    # The worker is free again.
    assert_sane(server, times=4)


def test_abort_spin_many_times_never_abandons_the_worker(server, r):
    """Pure bytecode is always interruptible: no abort of a spinning step may end up treated as a
    worker stuck in native code (each such false alarm costs a replacement worker)."""
    for i in range(50):
        r.delete("spinning")
        eid = start_unblocking(server, SPIN_PLAIN + "GB('ShardsIDReader').map(spin).run()\n")
        wait_until(lambda: r.get("spinning") == "1", what="the step to start spinning")
        assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
        errors = error_strings(results(server, eid))
        assert len(errors) == 1 and "Execution was aborted" in errors[0], (i, errors)
        assert "stuck in native code" not in errors[0], (i, errors)
        assert call(server, "RG.DROPEXECUTION", eid) == Status("OK")
    assert "is stuck in native code" not in server.log(), server.log_tail(10)
    assert_sane(server)


def test_abort_sleep(server, r):
    eid = start_unblocking(
        server,
        "import time\n"
        "def nap(x):\n"
        "    execute('SET', 'sleeping', '1')\n"
        "    time.sleep(60)\n"
        "    return 'woke up'\n"
        "GB('ShardsIDReader').map(nap).run()\n",
    )
    wait_until(lambda: r.get("sleeping") == "1", what="the step to start sleeping")
    assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
    wait_status(r, eid, "done")
    reply = results(server, eid)
    assert reply[0] == []
    errors = error_strings(reply)
    assert len(errors) == 1 and "Execution was aborted" in errors[0], errors
    assert_sane(server)


# ----------------------------------------------------------------------------------------------
# ExecutionTimeLimit
# ----------------------------------------------------------------------------------------------


@pytest.mark.module_args("ExecutionTimeLimit", "500")
def test_time_limit_load_arg_step(server):
    reply = call(server, "RG.PYEXECUTE", SPIN_PLAIN + "GB('ShardsIDReader').map(spin).run()\n")
    errors = error_strings(reply)
    assert reply[0] == [] and len(errors) == 1, reply
    assert "Execution time limit reached" in errors[0], errors
    assert "stuck in native code" not in errors[0], errors  # pure bytecode: interrupted, not abandoned
    assert_sane(server, times=4)


@pytest.mark.module_args("ExecutionTimeLimit", "500")
def test_time_limit_load_arg_script_body(server):
    reply = call(server, "RG.PYEXECUTE", "while True:\n    pass\n")
    assert isinstance(reply, Error), reply
    assert "Execution time limit reached" in reply, reply
    # caught and swallowed: still ends
    reply = call(server, "RG.PYEXECUTE",
                 "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n")
    assert isinstance(reply, Error) and "Execution time limit reached" in reply, reply
    assert_sane(server, times=4)


def test_time_limit_configset_at_runtime(server, r):
    assert call(server, "RG.CONFIGSET", "ExecutionTimeLimit", "500") == [Status("OK")]
    assert call(server, "RG.CONFIGGET", "ExecutionTimeLimit") == [500]
    reply = call(server, "RG.PYEXECUTE", SPIN_PLAIN + "GB('ShardsIDReader').map(spin).run()\n")
    errors = error_strings(reply)
    assert len(errors) == 1 and "Execution time limit reached" in errors[0], reply

    # Back to 0 = off: a loop keeps running (well past the old limit) until aborted.
    assert call(server, "RG.CONFIGSET", "ExecutionTimeLimit", "0") == [Status("OK")]
    r.delete("spinning")
    eid = start_unblocking(server, SPIN_PLAIN + "GB('ShardsIDReader').map(spin).run()\n")
    wait_until(lambda: r.get("spinning") == "1", what="the step to start spinning")
    time.sleep(2.0)
    assert status_of(r, eid) == "running"
    assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
    wait_status(r, eid, "done")
    assert_sane(server)


ENDLESS_STR = (
    "class Endless(Exception):\n"
    "    def __str__(self):\n"
    "        while True:\n"
    "            pass\n"
    "def fail(x):\n"
    "    raise Endless()\n"
)


@pytest.mark.module_args("ExecutionThreads", "1", "ExecutionTimeLimit", "1000")
def test_time_limit_reaches_loop_in_exception_formatting_step(server):
    """Pure Python that runs while the module formats an error (an exception's __str__) is still
    Python: the time limit must stop it, and the worker must not be written off as stuck in
    native code (a stuck worker keeps burning a core forever)."""
    reply = call(server, "RG.PYEXECUTE", ENDLESS_STR + "GB('ShardsIDReader').map(fail).run()\n")
    errors = error_strings(reply)
    assert len(errors) == 1 and "Execution time limit reached" in errors[0], reply
    assert "stuck in native code" not in errors[0], errors
    assert "is stuck in native code" not in server.log(), server.log_tail(5)
    assert_sane(server)


@pytest.mark.module_args("ExecutionThreads", "1", "ExecutionTimeLimit", "1000")
def test_time_limit_reaches_loop_in_exception_formatting_body(server):
    """The same in the script body: the RG.PYEXECUTE client must be answered."""
    reply = call(server, "RG.PYEXECUTE", ENDLESS_STR + "fail(1)\n", timeout=60)
    assert isinstance(reply, Error) and "Execution time limit reached" in reply, reply
    assert "is stuck in native code" not in server.log(), server.log_tail(5)
    assert_sane(server)


# ----------------------------------------------------------------------------------------------
# Disconnecting clients
# ----------------------------------------------------------------------------------------------


@pytest.mark.module_args("ExecutionThreads", "1")
@pytest.mark.parametrize("where", ["step", "body"])
def test_disconnect_aborts_blocking_execution(server, r, where):
    if where == "step":
        script = SPIN_PLAIN + "GB('ShardsIDReader').map(spin).run()\n"
    else:
        script = SPIN_PLAIN + "spin(1)\n"
    c = raw(server)
    c.send("RG.PYEXECUTE", script)
    wait_until(lambda: r.get("spinning") == "1", what="the script to start spinning")
    c.close()

    # Nothing is left running, and the single worker takes new work.
    wait_until(lambda: all(st != "running" for _i, st, _reg in dump_executions(r)),
               what="no execution running")
    wait_until(lambda: int(r.info("clients")["blocked_clients"]) == 0, what="no blocked client")
    assert_sane(server, times=3)
    assert "is stuck in native code" not in server.log()


# ----------------------------------------------------------------------------------------------
# Native loops: the watchdog abandons them
# ----------------------------------------------------------------------------------------------


@pytest.mark.module_args("ExecutionThreads", "1")
def test_native_loop_abort_replaces_worker(server, r):
    eid = start_unblocking(
        server,
        "import itertools\n"
        "GB('ShardsIDReader').map(lambda r: (execute('SET', 'spinning', '1'), sum(itertools.repeat(1)))).run()\n",
    )
    wait_until(lambda: r.get("spinning") == "1", what="the native loop to start")

    waited = {}

    def waiter():
        try:
            waited["reply"] = call(server, "RG.GETRESULTSBLOCKING", eid)
        except BaseException as e:  # reported below
            waited["reply"] = e

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    wait_until(lambda: int(r.info("clients")["blocked_clients"]) >= 1, what="the waiter to block")

    assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
    t.join(REPLY_DEADLINE)
    assert not t.is_alive(), "RG.GETRESULTSBLOCKING was never answered"
    reply = waited["reply"]
    errors = error_strings(reply)
    assert len(errors) == 1 and "stuck in native code" in errors[0], reply
    wait_status(r, eid, "done")

    # ExecutionThreads is 1 and that thread is still inside sum(): a replacement serves scripts.
    assert_sane(server, times=3)
    server.wait_log("is stuck in native code")


# ----------------------------------------------------------------------------------------------
# Recursion
# ----------------------------------------------------------------------------------------------


def test_deep_recursion(server):
    reply = call(server, "RG.PYEXECUTE", "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert isinstance(reply, Error) and "RecursionError" in reply, reply
    reply = call(server, "RG.PYEXECUTE", "def f(n):\n    return f(n + 1)\nGB('ShardsIDReader').map(lambda x: f(0)).run()\n")
    errors = error_strings(reply)
    assert len(errors) == 1 and "RecursionError" in errors[0], reply
    assert_sane(server)


@pytest.mark.module_args("ExecutionThreads", "1")
def test_raised_recursion_limit_still_bounded_and_reset(server):
    # Frames live on the heap, so only the cap on the limit keeps a raised limit from running
    # into the memory budget: the recursion ends at 100,000 frames.
    reply = call(server, "RG.PYEXECUTE",
                 "import sys\nsys.setrecursionlimit(10**7)\n"
                 "execute('SET', 'limit', sys.getrecursionlimit())\n"
                 "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert isinstance(reply, Error) and "RecursionError" in reply, reply
    assert call(server, "GET", "limit") == b"100000"
    assert isinstance(call(server, "RG.PYEXECUTE", "import sys\nsys.setrecursionlimit(0)\n"), Error)
    # The same (single) worker: the next script sees the default limit.
    reply = call(server, "RG.PYEXECUTE",
                 "import sys\nGB('ShardsIDReader').map(lambda x: sys.getrecursionlimit()).run()\n")
    assert reply == [[b"1000"], []], reply
    assert_sane(server)


@pytest.mark.module_args("ExecutionThreads", "1", "ExecutionTimeLimit", "500")
def test_stuck_workers_are_capped_and_reported(server, r):
    """Each script body stuck in native code gets its answer and costs a worker; replacements stop
    at 2 x ExecutionThreads stuck workers, said in the log and in INFO."""
    native = "import itertools\nsum(itertools.repeat(1))\n"
    for stuck in (1, 2, 3):
        reply = call(server, "RG.PYEXECUTE", native)
        assert isinstance(reply, Error) and "Execution time limit reached" in reply \
            and "stuck in native code" in reply, reply
        # The client is answered just before the worker is replaced and counted.
        wait_until(lambda: r.info("rg")["rg_stuck_workers"] == stuck, what=f"{stuck} stuck workers in INFO")
        if stuck < 3:
            # The replacement serves scripts.
            assert_sane(server)
            assert r.info("rg")["rg_workers"] == stuck + 1
    server.wait_log("over the cap of 2: not replaced")
    assert r.info("rg")["rg_workers"] == 3
    assert r.ping()


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------

MEMORY_LIMIT = 200_000_000
SLACK = 50 * 1024 * 1024

BOMBS = {
    "str_repeat": "x = 'a' * 2**40\n",
    "list_repeat": "x = [0] * 2**40\n",
    "bytearray": "x = bytearray(2**40)\n",
    "append_loop": "l = []\nwhile True:\n    l.append('x' * 1000)\n",
}


def pystats(server):
    reply = call(server, "RG.PYSTATS")
    return dict(zip([k.decode() if isinstance(k, bytes) else k for k in reply[::2]], reply[1::2]))


def used_memory(r):
    return int(r.info("memory")["used_memory"])


@pytest.mark.module_args("ExecutionThreads", "1", "PythonMemoryLimit", str(MEMORY_LIMIT))
def test_memory_bombs(server, r):
    r.set("keep", "value")
    r.hset("keeph", mapping={"a": "1", "b": "2"})
    assert_sane(server, times=3)  # warm up the interpreter before the baseline
    base_used = used_memory(r)
    base_curr = pystats(server)["CurrAllocated"]

    for name, bomb in BOMBS.items():
        for body in (bomb, "def step(x):\n" + "".join("    " + l + "\n" for l in bomb.splitlines())
                     + "    return 'survived'\nGB('ShardsIDReader').map(step).run()\n"):
            reply = call(server, "RG.PYEXECUTE", body)
            if isinstance(reply, Error):
                assert "MemoryError" in reply, (name, reply)
            else:
                errors = error_strings(reply)
                assert reply[0] == [] and len(errors) == 1 and "MemoryError" in errors[0], (name, reply)
                assert "stuck in native code" not in errors[0], (name, reply)

    # Everything the bombs took was given back.
    wait_until(lambda: used_memory(r) <= base_used + SLACK,
               what=f"used_memory back near {base_used} (now {used_memory(r)})")
    wait_until(lambda: pystats(server)["CurrAllocated"] <= base_curr + SLACK,
               what=f"CurrAllocated back near {base_curr} (now {pystats(server)['CurrAllocated']})")
    assert r.get("keep") == "value"
    assert r.hgetall("keeph") == {"a": "1", "b": "2"}
    assert_sane(server)


@pytest.mark.module_args("ExecutionThreads", "1", "PythonMemoryLimit", str(MEMORY_LIMIT))
def test_memory_limit_stops_script_that_went_over_in_one_allocation(server, r):
    """One allocation that takes the interpreter over PythonMemoryLimit (but is far from "huge")
    must still end the script with MemoryError at its next instructions, not leave it running
    (nor write it off as stuck in native code: it runs bytecode)."""
    script = (
        "def hog(x):\n"
        "    big = 'a' * (400 * 1024 * 1024)\n"
        "    i = 0\n"
        "    while True:\n"
        "        i += 1\n"
        "GB('ShardsIDReader').map(hog).run()\n"
    )
    reply = call(server, "RG.PYEXECUTE", script)
    errors = error_strings(reply)
    assert reply[0] == [] and len(errors) == 1, reply
    assert "MemoryError" in errors[0] and "Python memory limit reached" in errors[0], errors
    assert "stuck in native code" not in errors[0], errors
    assert_sane(server)


@pytest.mark.module_args("ExecutionThreads", "1", "PythonMemoryLimit", str(MEMORY_LIMIT))
def test_deep_recursion_gives_memory_back(server, r):
    """A script that raises its recursion limit and recurses until stopped must not leave its
    worker holding the memory of those frames (it would count against every later script).
    Before the limit was capped, 3 million frames left ~67 MB behind."""
    assert_sane(server, times=3)
    base_curr = pystats(server)["CurrAllocated"]
    base_used = used_memory(r)
    reply = call(server, "RG.PYEXECUTE",
                 "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)\n")
    assert isinstance(reply, Error) and ("RecursionError" in reply or "MemoryError" in reply), reply
    assert_sane(server)
    wait_until(lambda: pystats(server)["CurrAllocated"] <= base_curr + SLACK,
               what=f"CurrAllocated back near {base_curr} (now {pystats(server)['CurrAllocated']})",
               timeout=30)
    wait_until(lambda: used_memory(r) <= base_used + SLACK,
               what=f"used_memory back near {base_used} (now {used_memory(r)})", timeout=30)
