"""Asynchronous steps (docs/python-api.md#asynchronous-steps): gearsFuture with continueRun /
continueFailed in every step kind, the waiting-records window and record order, every error text,
`async def` callbacks, `await GB().run()`, the asyncio stand-in, createFuture / setFutureResults /
setFutureException / runCoroutine, where asynchrony is refused (isAsyncAllow, MULTI, Lua, execute()),
waiting executions that hold no worker, aborts and time limits reaching them, async steps in
registrations, and RG.PYSTATS after many bad runs.

How records are held and released: most tests run a script that registers two triggers in its own
session (`cont` and `nparked`) and runs a plan whose step parks each record on a gearsFuture stored
in the session's globals. `RG.TRIGGER nparked` tells how many futures wait; `RG.TRIGGER cont <how>`
continues every parked future with `how`, a lambda `(future, callback_args) -> value` evaluated in
the session. A script that registers and runs keeps its execution listed (docs/commands.md), so its
status and results can be read while it waits and after.

Every wait is a polling loop with a generous deadline; nothing here measures speed.
"""

import ast
import threading
import time

import pytest
import redis

from conftest import (
    REPLY_DEADLINE,
    Error,
    RawConnection,
    Status,
    TB_START,
    assert_gears_error,
    blocked_clients,
    call,
    dump_executions,
    id_number,
    pyexecute,
    status_of,
    tb_end,
    wait_status,
    wait_until,
)
from test_registrations_keys import dump_registrations, register_one, wait_stats

DROPPED = "Async record did not called continue"
NOT_ALLOWED = "Creating async record is not allowed"
NO_ASYNC_STEP = "Step does not support async"
SANE = "GB('ShardsIDReader').run()"


def gears_error_text(msg):
    """How an error raised as gears.error(msg) inside a step callback is reported (form 2)."""
    return tb_end("gears.error: " + msg)


def assert_sane(server, times=1):
    for _ in range(times):
        assert call(server, "RG.PYEXECUTE", SANE) == [[b"1"], []]


# --------------------------------------------------------------------------------------------
# Parking records and continuing them from another execution of the same session
# --------------------------------------------------------------------------------------------

PARK = """
parked = []
def park(*args):
    f = gearsFuture()
    parked.append((f, args))
    return f
def catch(fn):
    try:
        fn()
        return 'ok'
    except Exception as e:
        return str(e)
def cont(x):
    how = eval(x[1])
    items = list(parked)
    del parked[:]
    if len(x) > 2 and x[2] == 'reverse':
        items.reverse()
    return repr([how(f, a) for f, a in items])
GB('CommandReader').map(cont).register(trigger='cont')
GB('CommandReader').map(lambda x: len(parked)).register(trigger='nparked')
"""


def nparked(r):
    return int(r.execute_command("RG.TRIGGER", "nparked")[0])


def cont(r, how, reverse=False):
    """Continues every parked future with `how`; returns the list of what `how` returned."""
    args = ["RG.TRIGGER", "cont", how] + (["reverse"] if reverse else [])
    return ast.literal_eval(r.execute_command(*args)[0])


def start_parked(r, plan, extra=""):
    """Runs PARK + extra + `plan` (a script line that calls run()) in one session; returns the id of
    the execution of the run() (it stays listed because the script also registered)."""
    before = {e for e, _s, _reg in dump_executions(r)}
    assert pyexecute(r, PARK + extra + plan + "\n", "UNBLOCKING") == "OK"
    new = [e for e, _s, reg in dump_executions(r) if reg == 0 and e not in before]
    assert new, "the run() execution is not listed"
    # applying the registrations may use an execution of its own, created after the run()
    return min(new, key=id_number)


def py_plan(ops, items):
    return f"GB('PythonReader'){ops}.run(lambda: iter({items!r}))"


def drive(r, eid, how, reverse=False):
    """Continues parked futures with `how` until execution `eid` has ended. Returns
    (GETRESULTS reply, the largest number of futures seen waiting at once)."""
    deadline = time.monotonic() + REPLY_DEADLINE
    most = 0
    while status_of(r, eid) not in ("done", "aborted"):
        n = nparked(r)
        most = max(most, n)
        if n:
            cont(r, how, reverse)
        else:
            time.sleep(0.01)
        if time.monotonic() > deadline:
            pytest.fail(f"execution {eid} did not end (status {status_of(r, eid)})")
    return r.execute_command("RG.GETRESULTS", eid), most


def wait_parked(r, n):
    return wait_until(lambda: nparked(r) == n, what=f"{n} parked futures")


def get_execution_status(r, eid):
    reply = r.execute_command("RG.GETEXECUTION", eid)
    plan = reply[0][3]
    return dict(zip(plan[0::2], plan[1::2]))["status"]


# --------------------------------------------------------------------------------------------
# 4.1 continueRun in each step kind
# --------------------------------------------------------------------------------------------


@pytest.mark.module_args("ExecutionMaxIdleTime", "100")
def test_map_waits_running_and_continues(r):
    eid = start_parked(r, py_plan(".map(park)", [1, 2, 3]))
    wait_parked(r, 3)
    # The execution is running while its records wait, in both listings.
    assert status_of(r, eid) == "running"
    assert get_execution_status(r, eid) == "running"
    with pytest.raises(redis.ResponseError, match="execution is still running"):
        r.execute_command("RG.GETRESULTS", eid)
    # Waiting executions are not subject to ExecutionMaxIdleTime (100 ms here).
    time.sleep(0.5)
    assert status_of(r, eid) == "running"
    # Continued in reverse order: the results keep the records' order.
    assert cont(r, "lambda f, a: f.continueRun(a[0] * 10)", reverse=True) == [None, None, None]
    wait_status(r, eid, "done")
    assert r.execute_command("RG.GETRESULTS", eid) == [["10", "20", "30"], []]
    assert get_execution_status(r, eid) == "done"


def test_map_order_kept_with_some_records_waiting(r):
    eid = start_parked(r, py_plan(".map(lambda x: park(x) if x % 3 == 0 else x * 10)", list(range(12))))
    wait_parked(r, 4)
    res, _ = drive(r, eid, "lambda f, a: f.continueRun(a[0] * 10)", reverse=True)
    assert res == [[str(i * 10) for i in range(12)], []]


def test_map_more_than_1000_waiting_records(r):
    n = 1500
    eid = start_parked(r, py_plan(".map(park)", list(range(n))))
    wait_until(lambda: nparked(r) > 0, what="records to wait")

    def settled():
        a = nparked(r)
        time.sleep(0.3)
        return a if nparked(r) == a else None

    first = wait_until(settled, what="the number of waiting records to settle")
    # Up to 1000 records wait in one map step; the others are not pulled meanwhile.
    assert 1 <= first <= 1000, first
    assert status_of(r, eid) == "running"
    res, most = drive(r, eid, "lambda f, a: f.continueRun(a[0] * 2)", reverse=True)
    assert most <= 1000, most
    assert res == [[str(i * 2) for i in range(n)], []]


def test_flatmap_continue_value_is_expanded_in_reverse(r):
    eid = start_parked(r, py_plan(".flatmap(park)", [1, 2, 3]))
    wait_parked(r, 3)
    # a list expands (last element first), an empty list emits nothing, any other value is one record
    how = "lambda f, a: f.continueRun([a[0], 'x'] if a[0] == 1 else (a[0], 'y') if a[0] == 2 else [])"
    res, _ = drive(r, eid, how)
    assert res == [["x", "1", "(2, 'y')"], []]


def test_filter_keeps_record_iff_continue_value_truthy(r):
    items = [0, 1, 2, 3, 4, 5]
    eid = start_parked(r, py_plan(".filter(park)", items))
    wait_parked(r, 6)
    how = "lambda f, a: f.continueRun([None, 'yes', '', [1], 0, True][a[0]])"
    res, _ = drive(r, eid, how, reverse=True)
    assert res == [["1", "3", "5"], []]


def test_foreach_passes_the_original_record(r):
    eid = start_parked(r, py_plan(".foreach(park)", [{"n": 1}, {"n": 2}]))
    wait_parked(r, 2)
    # the continue value is ignored; the same record object passes on (a mutation made meanwhile shows)
    res, _ = drive(r, eid, "lambda f, a: (a[0].update(m=a[0]['n'] * 10), f.continueRun('ignored'))[1]")
    assert res == [["{'n': 1, 'm': 10}", "{'n': 2, 'm': 20}"], []]


def test_accumulate_waits_one_record_at_a_time(r):
    eid = start_parked(r, py_plan(".accumulate(park)", [1, 2, 3, 4]))
    res, most = drive(r, eid, "lambda f, a: f.continueRun((a[0] or 0) + a[1])")
    assert res == [["10"], []]
    assert most == 1


@pytest.mark.parametrize("op", ["localgroupby", "groupby"])
def test_group_reducer_waits_one_record_at_a_time(r, op):
    eid = start_parked(r, py_plan(f".{op}(lambda x: x % 2, park)", [1, 2, 3, 4, 5, 6]))
    res, most = drive(r, eid, "lambda f, a: f.continueRun((a[1] or 0) + a[2])")
    assert sorted(res[0]) == ["{'key': '0', 'value': 12}", "{'key': '1', 'value': 9}"]
    assert res[1] == []
    assert most == 1


def test_aggregateby_reducer_waits(r):
    eid = start_parked(r, py_plan(".aggregateby(lambda x: x % 2, 0, park, lambda k, a, v: a + v)", [1, 2, 3, 4, 5]))
    res, most = drive(r, eid, "lambda f, a: f.continueRun(a[1] + a[2])")
    assert sorted(res[0]) == ["{'key': '0', 'value': 6}", "{'key': '1', 'value': 9}"]
    assert res[1] == []
    assert most == 1


def test_waiting_steps_chained(r):
    eid = start_parked(r, py_plan(".map(park).filter(park).map(park)", [1, 2, 3, 4]))
    # map: 1..4 -> 10..40; filter: continued with 11..41 (truthy), keeps 10..40; last map: 10..40 -> 11..41
    res, _ = drive(r, eid, "lambda f, a: f.continueRun(a[0] * 10 if a[0] < 10 else a[0] + 1)")
    assert res == [["11", "21", "31", "41"], []]


# --------------------------------------------------------------------------------------------
# 4.1 continueFailed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op, ok", [
    ("map", ["1", "3"]),
    ("flatmap", ["1", "3"]),
    ("filter", ["1", "3"]),
    ("foreach", ["1", "3"]),
])
def test_continue_failed_makes_the_record_an_error(r, op, ok):
    eid = start_parked(r, py_plan(f".{op}(park)", [1, 2, 3]))
    wait_parked(r, 3)
    how = ("lambda f, a: f.continueFailed(ValueError('bad %d' % a[0])) if a[0] == 2 else "
           f"f.continueRun({'a[0]' if op in ('map', 'flatmap') else 'True'})")
    res, _ = drive(r, eid, how)
    assert res == [ok, ["bad 2"]]


@pytest.mark.parametrize("value, text", [
    ("'plain text'", "plain text"),
    ("KeyError('k')", "'k'"),
    ("42", "42"),
    ("Exception('a', 'b')", "('a', 'b')"),
])
def test_continue_failed_text_is_str_of_the_argument(r, value, text):
    eid = start_parked(r, "GB('ShardsIDReader').map(park).run()")
    wait_parked(r, 1)
    res, _ = drive(r, eid, f"lambda f, a: f.continueFailed({value})")
    assert res == [[], [text]]


@pytest.mark.parametrize("ops", [".accumulate(park)", ".localgroupby(lambda x: 'k', park)"])
def test_continue_failed_in_accumulating_steps(r, ops):
    eid = start_parked(r, "GB('ShardsIDReader')" + ops + ".run()")
    res, _ = drive(r, eid, "lambda f, a: f.continueFailed('acc failed')")
    assert res[1] == ["acc failed"]
    # the only record failed: nothing was accumulated from it
    assert res[0] in ([], ["None"], ["{'key': 'k', 'value': None}"]), res


# --------------------------------------------------------------------------------------------
# 4.1 error texts
# --------------------------------------------------------------------------------------------


def test_future_in_script_body(raw):
    assert_gears_error(raw, "gearsFuture()", "Future object can only be created inside certain execution steps")
    assert_gears_error(raw, "redisgears.gearsFutureCtx()",
                       "Future object can only be created inside certain execution steps")


def test_future_gets_no_arguments(r):
    res = pyexecute(r, "GB('ShardsIDReader').map(lambda x: gearsFuture(1)).run()")
    assert res[0] == [] and len(res[1]) == 1, res
    assert res[1][0].startswith(TB_START) and res[1][0].endswith(gears_error_text("Future gets no arguments")), res


@pytest.mark.parametrize("ops", [
    ".localgroupby(lambda x: gearsFuture(), lambda k, a, r: r)",
    ".groupby(lambda x: gearsFuture(), lambda k, a, r: r)",
    ".batchgroupby(lambda x: gearsFuture(), lambda k, l: l)",
    ".countby(lambda x: gearsFuture())",
    ".repartition(lambda x: gearsFuture())",
    ".batchgroupby(lambda x: 'k', lambda k, l: gearsFuture())",
], ids=["localgroupby_extractor", "groupby_extractor", "batchgroupby_extractor", "countby_extractor",
        "repartition", "batchgroupby_reducer"])
def test_step_does_not_support_async(r, ops):
    results, errors = pyexecute(r, f"GB('PythonReader'){ops}.run(lambda: iter([1]))")
    assert results == [] and len(errors) == 1, (results, errors)
    assert errors[0].endswith(gears_error_text(NO_ASYNC_STEP)), errors


def test_future_twice_in_one_callback(r):
    script = (
        "def twice(x):\n"
        "    a = gearsFuture()\n"
        "    b = gearsFuture()\n"
        "    return a\n"
        "GB('ShardsIDReader').map(twice).run()\n"
    )
    results, errors = pyexecute(r, script)
    assert results == [] and len(errors) == 1, errors
    assert errors[0].endswith(gears_error_text("Can not create async record twice on the same step")), errors


def test_future_twice_caught_then_other_value_returned(r):
    script = (
        "def twice(x):\n"
        "    a = gearsFuture()\n"
        "    try:\n"
        "        gearsFuture()\n"
        "    except Exception as e:\n"
        "        return [type(e).__module__, type(e).__name__, str(e)]\n"
        "GB('ShardsIDReader').map(twice).run()\n"
    )
    # the future created first was not returned: it is discarded and the returned value is used
    assert pyexecute(r, script) == [["['gears', 'error', 'Can not create async record twice on the same step']"], []]


def test_continue_twice(r):
    eid = start_parked(r, py_plan(".map(park)", [1, 2]))
    wait_parked(r, 2)
    how = ("lambda f, a: [f.continueRun(a[0] * 10), catch(lambda: f.continueRun(0)), "
           "catch(lambda: f.continueFailed('x'))][1:]")
    assert cont(r, how) == [["Can not continue with the same future twice"] * 2] * 2
    wait_status(r, eid, "done")
    assert r.execute_command("RG.GETRESULTS", eid) == [["10", "20"], []]


def test_continue_failed_then_continue(r):
    eid = start_parked(r, "GB('ShardsIDReader').map(park).run()")
    wait_parked(r, 1)
    assert cont(r, "lambda f, a: [f.continueFailed('first'), catch(lambda: f.continueRun(1))][1]") == [
        "Can not continue with the same future twice"]
    wait_status(r, eid, "done")
    assert r.execute_command("RG.GETRESULTS", eid) == [[], ["first"]]


def test_continue_before_returned(r):
    script = (
        "def early(x):\n"
        "    f = gearsFuture()\n"
        "    try:\n"
        "        f.continueRun('too early')\n"
        "    except Exception as e:\n"
        "        return str(e)\n"
        "    return 'continued'\n"
        "GB('ShardsIDReader').map(early).run()\n"
    )
    assert pyexecute(r, script) == [["Can not handle future untill it returned from the callback"], []]


def test_continue_before_returned_then_after(r):
    extra = (
        "def early(x):\n"
        "    f = gearsFuture()\n"
        "    parked.append((f, (catch(lambda: f.continueRun('too early')), catch(lambda: f.continueFailed('no')))))\n"
        "    return f\n"
    )
    eid = start_parked(r, "GB('ShardsIDReader').map(early).run()", extra)
    wait_parked(r, 1)
    res, _ = drive(r, eid, "lambda f, a: f.continueRun(list(a))")
    assert res == [[str(["Can not handle future untill it returned from the callback"] * 2)], []]


def test_continue_needs_exactly_one_argument(r):
    eid = start_parked(r, "GB('ShardsIDReader').map(park).run()")
    wait_parked(r, 1)
    how = ("lambda f, a: [catch(lambda: f.continueRun()), catch(lambda: f.continueRun(1, 2)), "
           "catch(lambda: f.continueFailed()), catch(lambda: f.continueFailed(1, 2)), f.continueRun('fine')][:4]")
    assert cont(r, how) == [["Continue function expect an object"] * 4]
    wait_status(r, eid, "done")
    assert r.execute_command("RG.GETRESULTS", eid) == [["fine"], []]


def test_continue_error_type_is_gears_error(r):
    extra = (
        "def kind(fn):\n"
        "    try:\n"
        "        fn()\n"
        "    except Exception as e:\n"
        "        return [type(e).__module__, type(e).__name__, isinstance(e, redisgears.GearsError), str(e)]\n"
    )
    eid = start_parked(r, "GB('ShardsIDReader').map(park).run()", extra)
    wait_parked(r, 1)
    assert cont(r, "lambda f, a: [kind(lambda: f.continueRun()), f.continueRun(1)][0]") == [
        ["gears", "error", True, "Continue function expect an object"]]
    wait_status(r, eid, "done")
    assert r.execute_command("RG.GETRESULTS", eid) == [["1"], []]


def test_future_returned_and_dropped(r):
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda x: gearsFuture()).run()")
    assert results == [] and errors == [DROPPED]


def test_future_parked_then_dropped_uncontinued(r):
    eid = start_parked(r, py_plan(".map(park)", [1, 2, 3]))
    wait_parked(r, 3)
    # record 2's future is left uncontinued; cont drops every reference to it when it returns
    res, _ = drive(r, eid, "lambda f, a: f.continueRun(a[0]) if a[0] != 2 else None")
    assert res == [["1", "3"], [DROPPED]]


def test_future_dropped_in_a_reference_cycle(r):
    # Only the cycle collector frees it; an idle worker runs it, so the record still fails.
    script = (
        "def m(x):\n"
        "    f = gearsFuture()\n"
        "    cycle = [f]\n"
        "    cycle.append(cycle)\n"
        "    return f\n"
        "GB('ShardsIDReader').map(m).run()\n"
    )
    assert pyexecute(r, script) == [[], [DROPPED]]


@pytest.mark.parametrize("op", ["filter", "foreach", "flatmap"])
def test_future_returned_and_dropped_other_steps(r, op):
    results, errors = pyexecute(r, f"GB('ShardsIDReader').{op}(lambda x: gearsFuture()).run()")
    assert results == [] and errors == [DROPPED]


@pytest.mark.parametrize("op", ["map", "filter", "foreach", "flatmap"])
def test_future_created_not_returned_uses_returned_value(r, op):
    script = (
        "def f(x):\n"
        "    fut = gearsFuture()\n"
        "    return [x, 'v']\n"
        f"GB('ShardsIDReader').{op}(f).run()\n"
    )
    expected = {"map": ["['1', 'v']"], "filter": ["1"], "foreach": ["1"], "flatmap": ["v", "1"]}[op]
    assert pyexecute(r, script) == [expected, []]


def test_accumulate_quirk_accumulator_becomes_none(r):
    script = (
        "seen = []\n"
        "def acc(a, x):\n"
        "    seen.append(a)\n"
        "    f = gearsFuture()\n"
        "    return (a or 0) + x\n"
        "GB('PythonReader').accumulate(acc).map(lambda a: [a, seen]).run(lambda: iter([1, 2, 3]))\n"
    )
    assert pyexecute(r, script) == [["[None, [None, None, None]]"], []]


@pytest.mark.parametrize("op", ["localgroupby", "groupby"])
def test_reducer_quirk_accumulator_becomes_none(r, op):
    script = (
        "seen = []\n"
        "def red(k, a, x):\n"
        "    seen.append(a)\n"
        "    f = gearsFuture()\n"
        "    return (a or 0) + x\n"
        f"GB('PythonReader').{op}(lambda x: 'k', red).map(lambda g: [g, seen]).run(lambda: iter([1, 2, 3]))\n"
    )
    assert pyexecute(r, script) == [["[{'key': 'k', 'value': None}, [None, None, None]]"], []]


def test_accumulate_quirk_when_the_callback_raised(r):
    script = (
        "seen = []\n"
        "def acc(a, x):\n"
        "    seen.append(a)\n"
        "    f = gearsFuture()\n"
        "    if x == 2:\n"
        "        raise Exception('after the future')\n"
        "    return (a or 0) + x\n"
        "GB('PythonReader').accumulate(acc).run(lambda: iter([1, 2, 3]))\n"
        "GB('CommandReader').map(lambda x: repr(seen)).register(trigger='seen')\n"
    )
    assert pyexecute(r, script) == "OK"
    eid = min((e for e, _s, reg in dump_executions(r) if reg == 0), key=id_number)
    wait_status(r, eid, "done")
    results, errors = r.execute_command("RG.GETRESULTS", eid)
    assert len(errors) == 1 and errors[0].endswith(tb_end("Exception: after the future")), errors
    seen = ast.literal_eval(r.execute_command("RG.TRIGGER", "seen")[0])
    # the accumulator was None for every call (the quirk), so nothing accumulated survives
    assert seen[:2] == [None, None], seen
    assert all(a is None for a in seen), seen
    assert results in ([], ["None"]), results


# --------------------------------------------------------------------------------------------
# 4.2 async def callbacks
# --------------------------------------------------------------------------------------------


def async_run(r, defs, ops, items, run_kwargs=""):
    sep = ", " if run_kwargs else ""
    return pyexecute(r, defs + f"GB('PythonReader'){ops}.run(lambda: iter({items!r}){sep}{run_kwargs})\n")


def test_async_map(r):
    defs = "async def f(x):\n    await asyncio.sleep(0.01)\n    return x * 10\n"
    assert async_run(r, defs, ".map(f)", [1, 2, 3]) == [["10", "20", "30"], []]


def test_async_map_order_with_different_delays(r):
    defs = "async def f(x):\n    await asyncio.sleep(0.01 * (5 - x))\n    return x\n"
    assert async_run(r, defs, ".map(f)", [1, 2, 3, 4]) == [["1", "2", "3", "4"], []]


def test_async_map_many_records(r):
    defs = "async def f(x):\n    await asyncio.sleep(0)\n    return x + 1\n"
    n = 3000
    assert async_run(r, defs, ".map(f)", list(range(n))) == [[str(i + 1) for i in range(n)], []]


def test_async_flatmap(r):
    defs = "async def f(x):\n    await asyncio.sleep(0)\n    return [x, x * 10] if x != 3 else (x,)\n"
    assert async_run(r, defs, ".flatmap(f)", [1, 2, 3]) == [["10", "1", "20", "2", "(3,)"], []]


def test_async_filter(r):
    defs = "async def f(x):\n    await asyncio.sleep(0)\n    return x % 2\n"
    assert async_run(r, defs, ".filter(f)", list(range(7))) == [["1", "3", "5"], []]


def test_async_foreach(r):
    defs = "async def f(x):\n    await asyncio.sleep(0)\n    x['seen'] = True\n    return 'ignored'\n"
    assert async_run(r, defs, ".foreach(f)", [{"a": 1}]) == [["{'a': 1, 'seen': True}"], []]


def test_async_accumulate(r):
    defs = "async def f(a, x):\n    await asyncio.sleep(0)\n    return (a or 0) + x\n"
    assert async_run(r, defs, ".accumulate(f)", list(range(101))) == [["5050"], []]


@pytest.mark.parametrize("op", ["localgroupby", "groupby"])
def test_async_group_reducer(r, op):
    defs = "async def red(k, a, x):\n    await asyncio.sleep(0)\n    return (a or 0) + x\n"
    res = async_run(r, defs, f".{op}(lambda x: x % 3, red)", list(range(9)))
    assert sorted(res[0]) == ["{'key': '0', 'value': 9}", "{'key': '1', 'value': 12}", "{'key': '2', 'value': 15}"]
    assert res[1] == []


def test_async_aggregateby(r):
    defs = "async def seq(k, a, x):\n    await asyncio.sleep(0)\n    return a + x\n"
    res = async_run(r, defs, ".aggregateby(lambda x: x % 2, 0, seq, lambda k, a, v: a + v)", [1, 2, 3, 4])
    assert sorted(res[0]) == ["{'key': '0', 'value': 6}", "{'key': '1', 'value': 4}"]
    assert res[1] == []


def test_async_callback_without_await(r):
    defs = "async def f(x):\n    return x * 2\n"
    assert async_run(r, defs, ".map(f)", [1, 2]) == [["2", "4"], []]


@pytest.mark.parametrize("raise_stmt, text", [
    ("raise ValueError('bad %d' % x)", "bad 1"),
    ("raise KeyError('k')", "'k'"),
    ("execute('GET')", "ERR wrong number of arguments for 'get' command"),
    ("flat_error('flat')", "flat"),
])
@pytest.mark.parametrize("before_await", [True, False], ids=["before_await", "after_await"])
def test_async_exception_text_is_str_only(r, raise_stmt, text, before_await):
    body = f"    {raise_stmt}\n    await asyncio.sleep(0)\n" if before_await else \
        f"    await asyncio.sleep(0.01)\n    {raise_stmt}\n"
    defs = "async def f(x):\n" + body + "    return x\n"
    assert async_run(r, defs, ".map(f)", [1]) == [[], [text]]


def test_async_error_and_results_mix(r):
    # the failing record comes last: once an error reaches the end, the reader may stop (1.9)
    defs = ("async def f(x):\n    await asyncio.sleep(0)\n    if x == 2:\n        raise Exception('two')\n"
            "    return x\n")
    assert async_run(r, defs, ".map(f)", [1, 3, 2]) == [["1", "3"], ["two"]]


def test_await_run_returns_results_and_errors(r):
    script = (
        "async def f(x):\n"
        "    ok = await GB('ShardsIDReader').map(lambda s: s + 'a').run()\n"
        "    bad = await GB('ShardsIDReader').map(lambda s: flat_error('inner failed')).run()\n"
        "    return repr([ok, bad])\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [[repr([[["1a"], []], [[], ["inner failed"]]])], []]


def test_await_run_gives_the_records_themselves(r):
    script = (
        "async def f(x):\n"
        "    res, errs = await GB('PythonReader').run(lambda: iter([1, {'a': [2]}, 'z']), convertToStr=False)\n"
        "    return [type(res).__name__, [type(v).__name__ for v in res], res, errs]\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [[repr(["list", ["int", "dict", "str"], [1, {"a": [2]}, "z"], []])], []]


def test_awaited_execution_is_dropped_when_done(r):
    script = (
        "async def f(x):\n"
        "    res = await GB('PythonReader').run(lambda: iter(range(5)))\n"
        "    return len(res[0])\n"
        "GB('PythonReader').map(f).run(lambda: iter(range(3)))\n"
    )
    assert pyexecute(r, script) == [["5", "5", "5"], []]
    wait_until(lambda: dump_executions(r) == [], what="no execution left listed")


@pytest.mark.module_args("ExecutionThreads", "1")
def test_await_run_on_a_single_worker(server, r):
    # the awaiting execution must not hold the only worker while the awaited one runs
    script = (
        "async def f(x):\n"
        "    a = await GB('ShardsIDReader').map(lambda s: 'inner').run()\n"
        "    b = await GB('PythonReader').run(lambda: iter([x]))\n"
        "    return a[0] + b[0]\n"
        "GB('PythonReader').map(f).run(lambda: iter([1, 2]))\n"
    )
    assert call(server, "RG.PYEXECUTE", script) == [[b"['inner', '1']", b"['inner', '2']"], []]


def test_coroutine_keeps_execution_context(server, r):
    script = (
        "async def f(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    execute('SET', 'from_coroutine', x)\n"
        "    log('log from a coroutine ' + x)\n"
        "    await asyncio.sleep(0)\n"
        "    return [execute('GET', 'from_coroutine'), isAsyncAllow()]\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [["['1', True]"], []]
    assert r.get("from_coroutine") == "1"
    server.wait_log("GEARS: log from a coroutine 1")


def test_await_inside_atomic(r):
    script = (
        "async def f(x):\n"
        "    try:\n"
        "        with atomic():\n"
        "            execute('SET', 'in_atomic', '1')\n"
        "            await asyncio.sleep(0.01)\n"
        "    except Exception as e:\n"
        "        return [type(e).__name__, str(e), redisgears.isInAtomicBlock()]\n"
        "    return 'awaited'\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [["['Exception', 'await is not allow inside atomic block', False]"], []]
    # Redis is not left locked
    assert r.get("in_atomic") == "1"
    assert pyexecute(r, SANE) == [["1"], []]


def test_await_inside_atomic_escaping(r):
    script = (
        "async def f(x):\n"
        "    with atomic():\n"
        "        await asyncio.sleep(0.01)\n"
        "    return 'awaited'\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [[], ["await is not allow inside atomic block"]]


# --------------------------------------------------------------------------------------------
# 4.2 createFuture, setFutureResults, setFutureException, runCoroutine
# --------------------------------------------------------------------------------------------


def test_create_future_set_results(r):
    script = (
        "async def setter(fut, v):\n"
        "    await asyncio.sleep(0.01)\n"
        "    setFutureResults(fut, v)\n"
        "async def f(x):\n"
        "    fut = createFuture()\n"
        "    runCoroutine(setter(fut, x + '!'))\n"
        "    return await fut\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [["1!"], []]


@pytest.mark.parametrize("exc, expected", [
    ("ValueError('v')", "['ValueError', 'v']"),
    ("'not an exception'", "['Exception', 'not an exception']"),
    ("42", "['Exception', '42']"),
])
def test_set_future_exception(r, exc, expected):
    script = (
        "async def setter(fut):\n"
        "    await asyncio.sleep(0.01)\n"
        f"    setFutureException(fut, {exc})\n"
        "async def f(x):\n"
        "    fut = createFuture()\n"
        "    runCoroutine(setter(fut))\n"
        "    try:\n"
        "        await fut\n"
        "    except Exception as e:\n"
        "        return [type(e).__name__, str(e)]\n"
        "    return 'no exception'\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [[expected], []]


def test_set_future_exception_escaping_is_str_only(r):
    script = (
        "async def f(x):\n"
        "    fut = createFuture()\n"
        "    setFutureException(fut, 'failed future')\n"
        "    return await fut\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    assert pyexecute(r, script) == [[], ["failed future"]]


def test_run_coroutine_continues_a_gears_future(r):
    script = (
        "async def compute(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    if x == 2:\n"
        "        raise ValueError('no %d' % x)\n"
        "    return x * 10\n"
        "def m(x):\n"
        "    f = gearsFuture()\n"
        "    runCoroutine(compute(x), f)\n"
        "    return f\n"
        "GB('PythonReader').map(m).run(lambda: iter([1, 3, 2]))\n"
    )
    # the failing record comes last: once an error reaches the end, the reader may stop (1.9)
    assert pyexecute(r, script) == [["10", "30"], ["no 2"]]


@pytest.mark.parametrize("call_args", ["f, 0.3", "f, delay=0.3", "f=f, delay=0.3"])
def test_run_coroutine_with_delay(r, call_args):
    script = (
        "import time\n"
        "starts = []\n"
        "async def stamp():\n"
        "    return time.time()\n"
        "def m(x):\n"
        "    f = gearsFuture()\n"
        "    starts.append(time.time())\n"
        f"    runCoroutine(stamp(), {call_args})\n"
        "    return f\n"
        "GB('ShardsIDReader').map(m).map(lambda t: t - starts[0] >= 0.25).run()\n"
    )
    # the coroutine ran no earlier than about the delay after runCoroutine (a lower bound, not a speed check)
    assert pyexecute(r, script) == [["True"], []]


def test_run_coroutine_without_future(r):
    script = (
        "async def later():\n"
        "    await asyncio.sleep(0.01)\n"
        "    execute('SET', 'later', 'done')\n"
        "def m(x):\n"
        "    runCoroutine(later(), delay=0.05)\n"
        "    return x\n"
        "GB('ShardsIDReader').map(m).run()\n"
    )
    assert pyexecute(r, script) == [["1"], []]
    wait_until(lambda: r.get("later") == "done", what="the coroutine's write")


# --------------------------------------------------------------------------------------------
# 4.2 where coroutines are refused
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ops", [
    ".localgroupby(ex, lambda k, a, r: r)",
    ".groupby(ex, lambda k, a, r: r)",
    ".batchgroupby(ex, lambda k, l: l)",
    ".repartition(ex)",
], ids=["localgroupby", "groupby", "batchgroupby", "repartition"])
def test_coroutine_extractor_refused(r, ops):
    defs = "async def ex(x):\n    return 'k'\n"
    assert async_run(r, defs, ops, [1]) == [[], ["coroutine are not allow on extractor"]]


def test_coroutine_batchgroupby_reducer_refused(r):
    defs = "async def red(k, l):\n    return len(l)\n"
    assert async_run(r, defs, ".batchgroupby(lambda x: 'k', red)", [1, 2]) == [[], ["coroutine are not allow on reduce"]]


def test_on_registered_coroutine_is_logged_and_ignored(server, r, raw):
    script = (
        "async def onreg():\n"
        "    execute('SET', 'onreg_ran', '1')\n"
        "GB('CommandReader').map(lambda x: 'works').register(trigger='t', onRegistered=onreg)\n"
    )
    register_one(r, script)
    assert raw.call("RG.TRIGGER", "t") == [b"works"]
    wait_until(lambda: "coroutine" in server.log().lower(), what="the onRegistered coroutine to be logged")
    assert r.get("onreg_ran") is None


# --------------------------------------------------------------------------------------------
# 4.2 the asyncio stand-in
# --------------------------------------------------------------------------------------------


def one_async(r, body, defs=""):
    """Runs `async def f(x): <body>` as a map over one record; returns [results, errors]."""
    script = defs + "async def f(x):\n" + "".join("    " + ln + "\n" for ln in body.strip("\n").split("\n"))
    return pyexecute(r, script + "GB('ShardsIDReader').map(f).run()\n")


def test_asyncio_is_in_globals_and_importable(r):
    script = "import asyncio as imported\nGB('ShardsIDReader').map(lambda x: imported is asyncio).run()\n"
    assert pyexecute(r, script) == [["True"], []]


def test_asyncio_gather(r):
    defs = "async def g(i):\n    await asyncio.sleep(0.01 * (3 - i))\n    return i * 10\n"
    assert one_async(r, "return await asyncio.gather(g(1), g(2), g(3))", defs) == [["[10, 20, 30]"], []]


def test_asyncio_gather_return_exceptions(r):
    defs = "async def g(i):\n    if i == 2:\n        raise ValueError('two')\n    return i\n"
    body = "res = await asyncio.gather(g(1), g(2), return_exceptions=True)\nreturn [res[0], type(res[1]).__name__, str(res[1])]"
    assert one_async(r, body, defs) == [["[1, 'ValueError', 'two']"], []]


def test_asyncio_gather_of_runs_fan_out_fan_in(r):
    body = (
        "res = await asyncio.gather(*[GB('PythonReader').run(lambda i=i: iter([i, i + 100])) for i in range(3)])\n"
        "return sorted(v for results, errors in res for v in results)"
    )
    assert one_async(r, body) == [["['0', '1', '100', '101', '102', '2']"], []]


def test_asyncio_future(r):
    defs = "async def setter(fut):\n    await asyncio.sleep(0.01)\n    fut.set_result('from future')\n"
    body = "fut = asyncio.Future()\nrunCoroutine(setter(fut))\nreturn [await fut, fut.done()]"
    assert one_async(r, body, defs) == [["['from future', True]"], []]


def test_asyncio_loop_create_future(r):
    defs = "async def setter(fut):\n    fut.set_exception(KeyError('x'))\n"
    body = ("fut = asyncio.get_event_loop().create_future()\nrunCoroutine(setter(fut))\n"
            "try:\n    await fut\nexcept KeyError as e:\n    return 'KeyError ' + str(e)")
    assert one_async(r, body, defs) == [["KeyError 'x'"], []]


def test_asyncio_wait_for_timeout(r):
    body = (
        "try:\n"
        "    await asyncio.wait_for(asyncio.sleep(3600), 0.05)\n"
        "except asyncio.TimeoutError:\n"
        "    timed_out = True\n"
        "else:\n"
        "    timed_out = False\n"
        "done = await asyncio.wait_for(g(), 10)\n"
        "return [timed_out, done]"
    )
    defs = "async def g():\n    await asyncio.sleep(0)\n    return 'in time'\n"
    assert one_async(r, body, defs) == [["[True, 'in time']"], []]


def test_asyncio_timeout(r):
    body = (
        "try:\n"
        "    async with asyncio.timeout(0.05):\n"
        "        await asyncio.sleep(3600)\n"
        "except (TimeoutError, asyncio.TimeoutError):\n"
        "    return 'timed out'\n"
        "return 'slept'"
    )
    assert one_async(r, body) == [["timed out"], []]


def test_asyncio_queue(r):
    defs = (
        "async def producer(q):\n"
        "    for i in range(5):\n"
        "        await q.put(i)\n"
        "        await asyncio.sleep(0)\n"
        "async def consumer(q):\n"
        "    return [await q.get() for _ in range(5)]\n"
    )
    body = "q = asyncio.Queue()\n_, got = await asyncio.gather(producer(q), consumer(q))\nreturn got"
    assert one_async(r, body, defs) == [["[0, 1, 2, 3, 4]"], []]


def test_asyncio_event(r):
    defs = (
        "async def setter(ev):\n"
        "    await asyncio.sleep(0.01)\n"
        "    ev.set()\n"
        "    return 'set'\n"
        "async def waiter(ev):\n"
        "    await ev.wait()\n"
        "    return 'woken'\n"
    )
    body = "ev = asyncio.Event()\nreturn await asyncio.gather(waiter(ev), setter(ev))"
    assert one_async(r, body, defs) == [["['woken', 'set']"], []]


@pytest.mark.parametrize("body", [
    "reader, writer = await asyncio.open_connection('127.0.0.1', 6379)\nreturn 'connected'",
    "p = await asyncio.create_subprocess_exec('true')\nreturn 'spawned'",
    "return asyncio.run(asyncio.sleep(0, 'ran'))",
], ids=["open_connection", "create_subprocess_exec", "run"])
def test_asyncio_refused_in_a_step(server, r, body):
    results, errors = one_async(r, body)
    assert results == [] and len(errors) == 1, (results, errors)
    assert_sane(server)


@pytest.mark.parametrize("script", [
    "async def g():\n    await asyncio.open_connection('127.0.0.1', 6379)\nasyncio.run(g())\n",
    "asyncio.run(asyncio.sleep(0))\n",
], ids=["open_connection", "run"])
def test_asyncio_refused_in_the_script_body(server, raw, script):
    res = raw.call("RG.PYEXECUTE", script)
    assert type(res) is Error, res
    assert_sane(server)


# --------------------------------------------------------------------------------------------
# 4.3 where asynchrony is refused
# --------------------------------------------------------------------------------------------


def test_is_async_allow_body_and_step(r):
    script = "body = isAsyncAllow()\nGB('ShardsIDReader').map(lambda x: [body, isAsyncAllow()]).run()\n"
    assert pyexecute(r, script) == [["[False, True]"], []]


def test_is_async_allow_in_sync_trigger(r, raw):
    register_one(r, "GB('CommandReader').map(lambda x: isAsyncAllow()).register(trigger='t', mode='sync')")
    assert raw.call("RG.TRIGGER", "t") == [b"True"]
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("RG.TRIGGER", "t") == Status("QUEUED")
    assert raw.call("EXEC") == [[b"False"]]
    assert raw.call("EVAL", "return redis.call('RG.TRIGGER', 't')", 0) == [b"False"]
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('RG.TRIGGER', 't')).run()") == [["['False']"], []]


def test_is_async_allow_in_sync_hook(r, raw):
    register_one(r, "GB('CommandReader').map(lambda x: str(isAsyncAllow())).register(hook='hset', mode='sync')")
    assert raw.call("HSET", "h", "f", "v") == b"True"
    assert raw.call("EVAL", "return redis.call('HSET', 'h', 'f', 'v')", 0) == b"False"
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("HSET", "h", "f", "v") == Status("QUEUED")
    assert raw.call("EXEC") == [b"False"]


SYNC_FUTURE_TRIGGER = "GB('CommandReader').map(lambda x: gearsFuture()).register(trigger='t', mode='sync')"
SYNC_CORO_TRIGGER = ("async def f(x):\n    return 'never'\n"
                     "GB('CommandReader').map(f).register(trigger='t', mode='sync')\n")


@pytest.mark.parametrize("script", [SYNC_FUTURE_TRIGGER, SYNC_CORO_TRIGGER], ids=["gearsFuture", "coroutine"])
def test_async_refused_in_multi_lua_and_execute(r, raw, script):
    register_one(r, script)
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("RG.TRIGGER", "t") == Status("QUEUED")
    res = raw.call("EXEC")
    assert len(res) == 1 and type(res[0]) is Error and NOT_ALLOWED in res[0], res
    res = raw.call("EVAL", "return redis.pcall('RG.TRIGGER', 't')", 0)
    assert type(res) is Error and NOT_ALLOWED in res, res
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('RG.TRIGGER', 't')).run()")
    assert results == [] and len(errors) == 1 and NOT_ALLOWED in errors[0], errors
    assert r.ping()


def test_future_refused_text_in_sync_trigger_from_lua(r, raw):
    register_one(r, SYNC_FUTURE_TRIGGER)
    res = raw.call("EVAL", "return redis.pcall('RG.TRIGGER', 't')", 0)
    assert type(res) is Error and res.endswith(gears_error_text(NOT_ALLOWED)), res


def test_sync_trigger_going_async_replies_when_done(server, r, raw):
    register_one(r, "async def f(x):\n    await asyncio.sleep(0.05)\n    return x[1].upper()\n"
                 "GB('CommandReader').map(f).register(trigger='up', mode='sync')\n")
    assert raw.call("RG.TRIGGER", "up", "abc") == [b"ABC"]


def test_sync_trigger_parked_on_a_future(server, r):
    extra = "GB('CommandReader').map(park).register(trigger='wait', mode='sync')\n"
    assert pyexecute(r, PARK + extra) == "OK"
    got = {}

    def caller():
        c = RawConnection(server.port, timeout=REPLY_DEADLINE)
        try:
            got["reply"] = c.call("RG.TRIGGER", "wait", "x")
        finally:
            c.close()

    t = threading.Thread(target=caller, daemon=True)
    t.start()
    wait_parked(r, 1)
    assert "reply" not in got
    assert cont(r, "lambda f, a: f.continueRun(a[0][1] + '!')") == [None]
    t.join(REPLY_DEADLINE)
    assert got.get("reply") == [b"x!"]


# --------------------------------------------------------------------------------------------
# Registrations with async steps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "async_local", "sync"])
def test_keys_registration_async_step(r, mode):
    rid = register_one(r, (
        "async def f(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    execute('SET', 'out:' + x['key'], x['value'] + '!')\n"
        "    return x['key']\n"
        f"GB().map(f).register(prefix='k*', mode={mode!r})\n"
    ))
    r.set("k1", "v1")
    r.set("k2", "v2")
    wait_stats(r, rid, numTriggered=2, numSuccess=2)
    assert r.get("out:k1") == "v1!" and r.get("out:k2") == "v2!"


def test_keys_registration_future_continued_by_a_trigger(r):
    extra = "GB().map(park).register(prefix='k*', mode='async_local')\n"
    assert pyexecute(r, PARK + extra) == "OK"
    rid = [reg["id"] for reg in dump_registrations(r) if reg["reader"] == "KeysReader"][0]
    r.set("k1", "v")
    wait_parked(r, 1)
    running = [e for e, st, reg in dump_executions(r) if reg == 1 and st == "running"]
    assert len(running) == 1, dump_executions(r)
    cont(r, "lambda f, a: f.continueRun(a[0]['key'] + ' continued')")
    wait_stats(r, rid, numSuccess=1)
    assert r.execute_command("RG.GETRESULTS", running[0]) == [["k1 continued"], []]


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_keys_registration_override_reply_from_coroutine(r, raw, mode):
    # A sync execution that goes asynchronous holds the command's reply too.
    register_one(r, (
        "async def f(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    override_reply('+saved ' + get_command()[1])\n"
        f"GB().foreach(f).register(prefix='k*', commands=['set'], mode={mode!r})\n"
    ))
    assert raw.call("SET", "k1", "v") == Status("saved k1")
    assert raw.call("GET", "k1") == b"v"


def test_stream_registration_async_step(r):
    rid = register_one(r, (
        "async def f(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    execute('RPUSH', 'got', x['value']['n'])\n"
        "GB('StreamReader').foreach(f).register(prefix='s', batch=2)\n"
    ))
    for i in range(4):
        r.xadd("s", {"n": i})
    wait_until(lambda: r.llen("got") == 4, what="every entry processed")
    assert r.lrange("got", 0, -1) == ["0", "1", "2", "3"]
    wait_stats(r, rid, numSuccess=2, numFailures=0)
    wait_until(lambda: r.xlen("s") == 0, what="the stream to be trimmed")


@pytest.mark.parametrize("mode", ["async", "async_local", "sync"])
def test_trigger_async_step(raw, r, mode):
    register_one(r, (
        "async def f(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    return [a.upper() for a in x[1:]]\n"
        f"GB('CommandReader').flatmap(f).register(trigger='up', mode={mode!r})\n"
    ))
    assert raw.call("RG.TRIGGER", "up", "a", "b") == [b"B", b"A"]


def test_trigger_async_step_error_reply(raw, r):
    register_one(r, "async def f(x):\n    raise ValueError('coroutine failed')\n"
                 "GB('CommandReader').map(f).register(trigger='t')\n")
    assert raw.call("RG.TRIGGER", "t") == Error("coroutine failed")


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_hook_call_next_from_coroutine(raw, r, mode):
    register_one(r, (
        "async def h(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    return '+' + call_next(x[1], x[2].upper())\n"
        f"GB('CommandReader').map(h).register(hook='set', keyprefix='up:', mode={mode!r})\n"
    ))
    assert raw.call("SET", "up:1", "hello") == Status("OK")
    assert raw.call("GET", "up:1") == b"HELLO"
    assert raw.call("SET", "other", "hello") == Status("OK")
    assert raw.call("GET", "other") == b"hello"


def test_hook_call_next_from_gathered_coroutines(raw, r):
    register_one(r, (
        "async def nxt(x):\n"
        "    await asyncio.sleep(0)\n"
        "    return call_next(*x[1:])\n"
        "async def h(x):\n"
        "    res = await asyncio.gather(nxt(x))\n"
        "    return res[0]\n"
        "GB('CommandReader').map(h).register(hook='hset', convertToStr=False)\n"
    ))
    assert raw.call("HSET", "h", "f", "v") == 1
    assert raw.call("HGET", "h", "f") == b"v"


# --------------------------------------------------------------------------------------------
# Waiting executions hold no worker
# --------------------------------------------------------------------------------------------

SPAWN = """
parked = []
def park(x):
    f = gearsFuture()
    parked.append(lambda: f.continueRun(x * 2))
    return f
async def wait_future(x):
    fut = createFuture()
    parked.append(lambda: setFutureResults(fut, x * 2))
    return await fut
def spawn(x):
    step = park if x[1] == 'gearsFuture' else wait_future
    for i in range(int(x[2])):
        GB('ShardsIDReader').map(lambda r, i=i: i).map(step).foreach(lambda v: execute('RPUSH', 'resolved', v)).run()
    return 'spawned'
def release(x):
    items = list(parked)
    del parked[:]
    for fn in items:
        fn()
    return len(items)
GB('CommandReader').map(spawn).register(trigger='spawn')
GB('CommandReader').map(release).register(trigger='release')
GB('CommandReader').map(lambda x: len(parked)).register(trigger='nparked')
"""


@pytest.mark.module_args("ExecutionThreads", "3", "MaxExecutions", "10000")
@pytest.mark.parametrize("kind", ["gearsFuture", "coroutine"])
def test_1000_parked_executions_leave_the_workers_free(server, r, kind):
    n = 1000
    assert pyexecute(r, SPAWN) == "OK"
    assert r.execute_command("RG.TRIGGER", "spawn", kind, n) == ["spawned"]
    wait_until(lambda: nparked(r) == n, what=f"{n} parked executions")
    running = [e for e, st, _reg in dump_executions(r) if st == "running"]
    assert len(running) >= n, len(running)
    # Every worker is free: plain scripts (more of them than workers) answer, within a generous deadline.
    for _ in range(9):
        assert call(server, "RG.PYEXECUTE", SANE, timeout=60) == [[b"1"], []]
    assert call(server, "RG.PYEXECUTE", "GB('PythonReader').map(lambda x: x * x).run(lambda: iter(range(100)))",
                timeout=60)[0] == [str(i * i).encode() for i in range(100)]
    assert r.execute_command("RG.TRIGGER", "release") == [str(n)]
    wait_until(lambda: r.llen("resolved") == n, what="every parked execution to resolve")
    assert sorted(int(v) for v in r.lrange("resolved", 0, -1)) == [i * 2 for i in range(n)]
    wait_until(lambda: not [e for e, st, _reg in dump_executions(r) if st == "running"],
               what="no execution left running")
    assert nparked(r) == 0


@pytest.mark.module_args("ExecutionThreads", "1")
def test_sleeping_coroutines_hold_no_worker(server, r):
    script = (
        "async def f(x):\n"
        "    n = 0\n"
        "    while execute('EXISTS', 'go') == 0 and n < 6000:\n"
        "        await asyncio.sleep(0.02)\n"
        "        n += 1\n"
        "    return 'woke'\n"
        "GB('ShardsIDReader').map(f).run()\n"
    )
    ids = [call(server, "RG.PYEXECUTE", script, "UNBLOCKING").decode() for _ in range(5)]
    for eid in ids:
        assert get_execution_status(r, eid) in ("created", "running")
    wait_until(lambda: all(status_of(r, e) == "running" for e in ids), what="the coroutines to start")
    assert_sane(server, times=3)
    r.set("go", "1")
    for eid in ids:
        assert call(server, "RG.GETRESULTSBLOCKING", eid) == [[b"woke"], []]


@pytest.mark.module_args("ExecutionThreads", "1", "PythonMemoryLimit", "100000000")
def test_waiting_records_count_against_the_memory_limit(server, r):
    """Each waiting record holds 4 MB that only the waiting record references: 100 of them would
    take 400 MB, over the 100 MB limit. The plan stops with MemoryError before all are parked, and
    aborting the execution gives the memory back. (No Python of the session is run while the
    memory is held: any of it could itself fail with MemoryError.)"""
    slack = 50 * 1024 * 1024
    assert_sane(server, times=2)
    base = pystats(server)["CurrAllocated"]
    extra = (
        "def park_only(x):\n"
        "    execute('INCR', 'parked_count')\n"
        "    f = gearsFuture()\n"
        "    parked.append((f, ()))\n"
        "    return f\n"
    )
    eid = start_parked(r, "GB('PythonReader').map(park_only).run(lambda: ('x' * 4000000 + str(i) for i in range(100)))",
                       extra)

    def settled():
        if status_of(r, eid) == "done":
            return "done"
        a = int(r.get("parked_count") or 0)
        time.sleep(0.5)
        return a if a and int(r.get("parked_count") or 0) == a and status_of(r, eid) == "running" else None

    got = wait_until(settled, what="the parked records to settle")
    if got == "done":
        errors = r.execute_command("RG.GETRESULTS", eid)[1]
        assert any("MemoryError" in e for e in errors), errors
    else:
        assert got < 100, "every 4 MB record was parked despite the 100 MB limit"
        assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
        assert status_of(r, eid) in ("aborted", "done")
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    # the session's own references to the futures go too (the reply does not matter here)
    try:
        cont(r, "lambda f, a: None")
    except redis.ResponseError:
        pass
    wait_until(lambda: pystats(server)["CurrAllocated"] <= base + slack,
               what=f"CurrAllocated back near {base} (now {pystats(server)['CurrAllocated']})", timeout=60)
    assert_sane(server, times=2)


# --------------------------------------------------------------------------------------------
# Aborts, time limits and disconnects reach waiting executions
# --------------------------------------------------------------------------------------------


def test_abort_waiting_execution(server, r):
    eid = start_parked(r, py_plan(".map(park)", [1, 2]))
    wait_parked(r, 2)
    assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
    assert status_of(r, eid) == "aborted"
    # continuing the futures of an aborted execution changes nothing and breaks nothing
    cont(r, "lambda f, a: catch(lambda: f.continueRun(1))")
    time.sleep(0.2)
    assert status_of(r, eid) == "aborted"
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert_sane(server)


def test_abort_parked_coroutine(server, r):
    script = "async def f(x):\n    await asyncio.sleep(3600)\n    return 'woke'\nGB('ShardsIDReader').map(f).run()\n"
    eid = call(server, "RG.PYEXECUTE", script, "UNBLOCKING").decode()
    wait_status(r, eid, "running")
    assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
    assert status_of(r, eid) == "aborted"
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert_sane(server)


def test_abort_waiting_execution_answers_blocked_waiters(server, r):
    eid = start_parked(r, "GB('ShardsIDReader').map(park).run()")
    wait_parked(r, 1)
    got = {}

    def waiter():
        got["reply"] = call(server, "RG.GETRESULTSBLOCKING", eid)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    wait_until(lambda: blocked_clients(r) >= 1, what="the waiter to block")
    assert call(server, "RG.ABORTEXECUTION", eid) == Status("OK")
    t.join(REPLY_DEADLINE)
    assert not t.is_alive(), "RG.GETRESULTSBLOCKING was not answered after the abort"
    assert isinstance(got["reply"], list) and len(got["reply"]) == 2 and got["reply"][0] == [], got


NEVER_CONTINUED = (
    "kept = []\n"
    "def hold(x):\n"
    "    f = gearsFuture()\n"
    "    kept.append(f)\n"
    "    return f\n"
    "GB('ShardsIDReader').map(hold).run()\n"
)
SLEEP_FOREVER = "async def f(x):\n    await asyncio.sleep(3600)\n    return 'woke'\nGB('ShardsIDReader').map(f).run()\n"


@pytest.mark.module_args("ExecutionTimeLimit", "500")
@pytest.mark.parametrize("script", [NEVER_CONTINUED, SLEEP_FOREVER], ids=["future", "coroutine"])
def test_time_limit_reaches_waiting_execution(server, r, script):
    # The blocking client gets its reply; the error says why (ours: the spec leaves the text to
    # docs/commands.md, which names it "Execution time limit reached").
    reply = call(server, "RG.PYEXECUTE", script)
    assert isinstance(reply, list) and reply[0] == [], reply
    assert any(b"Execution time limit reached" in e for e in reply[1]), reply
    # UNBLOCKING: the execution ends (done with that error, or aborted)
    eid = call(server, "RG.PYEXECUTE", script, "UNBLOCKING").decode()
    wait_status(r, eid, ("done", "aborted"))
    if status_of(r, eid) == "done":
        errors = r.execute_command("RG.GETRESULTS", eid)[1]
        assert any("Execution time limit reached" in e for e in errors), errors
    assert_sane(server)


def test_time_limit_set_at_runtime_reaches_parked_coroutine(server, r):
    assert call(server, "RG.CONFIGSET", "ExecutionTimeLimit", "500") == [Status("OK")]
    reply = call(server, "RG.PYEXECUTE", SLEEP_FOREVER)
    assert isinstance(reply, list) and reply[0] == [], reply
    assert any(b"Execution time limit reached" in e for e in reply[1]), reply
    assert call(server, "RG.CONFIGSET", "ExecutionTimeLimit", "0") == [Status("OK")]
    assert_sane(server)


@pytest.mark.parametrize("script", [NEVER_CONTINUED, SLEEP_FOREVER], ids=["future", "coroutine"])
def test_blocked_client_disconnect_reaches_waiting_execution(server, r, script):
    c = RawConnection(server.port)
    c.send("RG.PYEXECUTE", script)
    wait_until(lambda: any(st == "running" for _e, st, _reg in dump_executions(r)), what="the execution to wait")
    c.close()
    wait_until(lambda: not any(st in ("running", "created") for _e, st, _reg in dump_executions(r)),
               what="the waiting execution to end")
    wait_until(lambda: blocked_clients(r) == 0, what="no blocked client")
    assert_sane(server, times=2)


def test_trigger_client_disconnect_while_parked(server, r):
    extra = "GB('CommandReader').map(park).register(trigger='wait')\n"
    assert pyexecute(r, PARK + extra) == "OK"
    c = RawConnection(server.port)
    c.send("RG.TRIGGER", "wait")
    wait_parked(r, 1)
    c.close()
    wait_until(lambda: blocked_clients(r) == 0, what="no blocked client")
    # continuing afterwards breaks nothing
    cont(r, "lambda f, a: catch(lambda: f.continueRun('late'))")
    wait_until(lambda: not any(st == "running" for _e, st, _reg in dump_executions(r)), what="nothing running")
    assert_sane(server)


# --------------------------------------------------------------------------------------------
# Unregistration during an async execution
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("abortpending", [False, True], ids=["plain", "abortpending"])
def test_unregister_during_async_execution_leaves_nothing(server, r, abortpending):
    rid = register_one(r, (
        "async def f(x):\n"
        "    n = 0\n"
        "    while execute('EXISTS', 'go') == 0 and n < 6000:\n"
        "        await asyncio.sleep(0.02)\n"
        "        n += 1\n"
        "    execute('SET', 'finished', x['key'])\n"
        "    return x['key']\n"
        "GB().map(f).register(prefix='k*')\n"
    ))
    r.set("k1", "v")
    wait_until(lambda: [e for e, st, reg in dump_executions(r) if reg == 1 and st == "running"],
               what="the registration's execution to wait")
    args = ["RG.UNREGISTER", rid] + (["abortpending"] if abortpending else [])
    assert r.execute_command(*args) == "OK"
    assert dump_registrations(r) == []
    r.set("go", "1")
    if not abortpending:
        wait_until(lambda: r.get("finished") == "k1", what="the waiting execution to finish")
    wait_until(lambda: dump_executions(r) == [], what="the registration's executions to be dropped")
    wait_until(lambda: r.execute_command("RG.PYDUMPSESSIONS") == [], what="the session to go")
    if abortpending:
        time.sleep(0.3)
        assert r.get("finished") is None
    r.set("k2", "v")  # nothing fires any more
    time.sleep(0.2)
    assert dump_executions(r) == []
    assert_sane(server)


def test_unregister_while_records_wait_on_futures(server, r):
    extra = "GB().map(park).register(prefix='k*', mode='async_local')\n"
    assert pyexecute(r, PARK + extra) == "OK"
    rid = [reg["id"] for reg in dump_registrations(r) if reg["reader"] == "KeysReader"][0]
    r.set("k1", "v")
    wait_parked(r, 1)
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    assert [reg["reader"] for reg in dump_registrations(r)] == ["CommandReader", "CommandReader"]
    cont(r, "lambda f, a: catch(lambda: f.continueRun('late'))")
    wait_until(lambda: [e for e, _st, reg in dump_executions(r) if reg == 1] == [],
               what="the unregistered registration's executions to be dropped")
    assert nparked(r) == 0
    assert_sane(server)


# --------------------------------------------------------------------------------------------
# Bad input many times: RG.PYSTATS back near its baseline
# --------------------------------------------------------------------------------------------

BAD_RUNS = [
    ("GB('ShardsIDReader').map(lambda x: gearsFuture()).run()", [[], [DROPPED.encode()]]),
    ("async def f(x):\n    await asyncio.sleep(0)\n    raise ValueError('bad')\nGB('ShardsIDReader').map(f).run()\n",
     [[], [b"bad"]]),
    ("async def twice(f):\n    f.continueRun('a')\n    try:\n        f.continueRun('b')\n    except Exception:\n        pass\n"
     "def m(x):\n    f = gearsFuture()\n    runCoroutine(twice(f))\n    return f\nGB('ShardsIDReader').map(m).run()\n",
     [[b"a"], []]),
    ("async def noarg(f):\n    try:\n        f.continueRun()\n    except Exception:\n        pass\n    f.continueRun('c')\n"
     "def m(x):\n    f = gearsFuture()\n    runCoroutine(noarg(f))\n    return f\nGB('ShardsIDReader').map(m).run()\n",
     [[b"c"], []]),
    ("def m(x):\n    f = gearsFuture()\n    try:\n        f.continueRun(1)\n    except Exception:\n        pass\n    return 'r'\n"
     "GB('ShardsIDReader').map(m).run()\n", [[b"r"], []]),
]


def pystats(server):
    reply = call(server, "RG.PYSTATS")
    return dict(zip([k.decode() if isinstance(k, bytes) else k for k in reply[0::2]], reply[1::2]))


def run_bad(server, total, clients=4):
    """Runs the BAD_RUNS scripts in turn, `total` runs split over `clients` pipelined connections;
    checks every reply."""
    per = total // clients
    problems = []

    def worker(k):
        c = RawConnection(server.port, timeout=REPLY_DEADLINE)
        try:
            for start in range(0, per, 100):
                batch = [BAD_RUNS[(k + i) % len(BAD_RUNS)] for i in range(start, min(start + 100, per))]
                for script, _ in batch:
                    c.send("RG.PYEXECUTE", script)
                for script, expected in batch:
                    got = c.read()
                    if got != expected:
                        problems.append((script, got))
        except Exception as e:  # noqa: BLE001 - reported below
            problems.append(("connection", repr(e)))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not problems, problems[:5]


def test_pystats_back_near_baseline_after_10000_bad_runs(server, r):
    slack = 5 * 1024 * 1024
    run_bad(server, 500)  # warm-up: every worker has compiled and run each kind
    base = pystats(server)["CurrAllocated"]
    run_bad(server, 10_000)
    wait_until(lambda: pystats(server)["CurrAllocated"] <= base + slack,
               what=f"CurrAllocated back near {base} (now {pystats(server)['CurrAllocated']})", timeout=60)
    assert dump_executions(r) == []
    assert blocked_clients(r) == 0
    assert_sane(server)


# --------------------------------------------------------------------------------------------
# Request / reply over streams (the flow of docs/python-api.md#waiting-for-a-reply-on-a-stream)
# --------------------------------------------------------------------------------------------

REQUEST_REPLY = {
    "coroutine": (
        "pending = {}\n"
        "async def ask(x):\n"
        "    req_id, question = x[1], x[2]\n"
        "    fut = createFuture()\n"
        "    pending[req_id] = fut\n"
        "    execute('XADD', 'requests', '*', 'id', req_id, 'question', question)\n"
        "    return await asyncio.wait_for(fut, 60)\n"
        "def on_reply(entry):\n"
        "    fut = pending.pop(entry['value']['id'], None)\n"
        "    if fut is not None:\n"
        "        setFutureResults(fut, entry['value']['answer'])\n"
    ),
    "gearsFuture": (
        "pending = {}\n"
        "def ask(x):\n"
        "    req_id, question = x[1], x[2]\n"
        "    f = gearsFuture()\n"
        "    pending[req_id] = f\n"
        "    execute('XADD', 'requests', '*', 'id', req_id, 'question', question)\n"
        "    return f\n"
        "def on_reply(entry):\n"
        "    f = pending.pop(entry['value']['id'], None)\n"
        "    if f is not None:\n"
        "        f.continueRun(entry['value']['answer'])\n"
    ),
}


@pytest.mark.parametrize("kind", ["coroutine", "gearsFuture"])
def test_request_reply_over_streams(server, r, kind):
    script = REQUEST_REPLY[kind] + (
        "GB('CommandReader').map(ask).register(trigger='ask')\n"
        "GB('StreamReader').foreach(on_reply).register(prefix='replies')\n"
    )
    register = pyexecute(r, script)
    assert register == "OK"
    got = {}

    def asker(i):
        got[i] = call(server, "RG.TRIGGER", "ask", f"q{i}", f"hello {i}")

    threads = [threading.Thread(target=asker, args=(i,), daemon=True) for i in range(5)]
    for t in threads:
        t.start()
    # the "service" is this test: it reads the requests and answers them, in reverse order
    wait_until(lambda: r.xlen("requests") == 5, what="5 requests")
    entries = r.xrange("requests")
    assert blocked_clients(r) == 5
    for _eid, fields in reversed(entries):
        r.xadd("replies", {"id": fields["id"], "answer": fields["question"].upper()})
    for t in threads:
        t.join(REPLY_DEADLINE)
    assert got == {i: [f"HELLO {i}".encode()] for i in range(5)}
    assert r.execute_command("RG.DUMPEXECUTIONS") == [] or all(
        st != "running" for _e, st, _reg in dump_executions(r))
