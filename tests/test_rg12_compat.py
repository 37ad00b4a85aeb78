"""RedisGears 1.2 compatibility details (docs/python-api.md): keyword arguments that a function does
not take raise TypeError instead of being ignored; a trigger or a non-sync hook registered twice is
refused with RedisGears' texts; `shardReaderCallback` is a session global; misusing a gearsFuture
gives a user-level error (no private attribute of the module in it); importing a package that
RedisGears would install with REQUIREMENTS says it is not available; a step that creates a
gearsFuture and then raises fails its record like any other error, and the future is dropped.

Every wait is a polling loop with a generous deadline; nothing here measures speed.
"""

import ast

import pytest

from conftest import (
    SHARD0,
    Error,
    Status,
    dump_executions,
    pyexecute,
    script_error,
    status_of,
    tb_end,
    wait_until,
)
from test_registrations_keys import dump_registrations, refusal, register_one, stats, wait_stats


def assert_type_error(raw, script, msg):
    """The script fails with TypeError(msg), as a traceback of the script's line (form 2)."""
    text = script_error(raw, script)
    assert text.endswith(tb_end("TypeError: " + msg)), text
    return text


def run_value(raw, body):
    """Runs `body` (which sets `out`) in a step, and returns the repr'd `out`."""
    script = "def f(x):\n" + "".join("    " + line + "\n" for line in body.splitlines()) + "    return repr(out)\n"
    script += "GB('ShardsIDReader').map(f).run()\n"
    res = pyexecute_raw(raw, script)
    assert res[1] == [], res
    return ast.literal_eval(res[0][0].decode())


def pyexecute_raw(raw, script):
    res = raw.call("RG.PYEXECUTE", script)
    assert isinstance(res, list), res
    return res


# --------------------------------------------------------------------------------------------
# 1. Unknown keyword arguments raise TypeError, naming the argument
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("script, msg", [
    ("GB().register(eventtypes=['set'])",
     "register() got an unexpected keyword argument 'eventtypes'. Did you mean 'eventTypes'?"),
    ("GB().register(prefix='k*', keytypes=['string'])",
     "register() got an unexpected keyword argument 'keytypes'. Did you mean 'keyTypes'?"),
    ("GB().register(Prefix='k*')",
     "register() got an unexpected keyword argument 'Prefix'. Did you mean 'prefix'?"),
    ("GB().register(fromId='0-0')", "register() got an unexpected keyword argument 'fromId'"),
    ("GB('StreamReader').register(prefix='s', onFailedRetryIntervall=2)",
     "register() got an unexpected keyword argument 'onFailedRetryIntervall'. Did you mean 'onFailedRetryInterval'?"),
    ("GB('StreamReader').register(eventTypes=['set'])", "register() got an unexpected keyword argument 'eventTypes'"),
    ("GB('CommandReader').register(Trigger='t')",
     "register() got an unexpected keyword argument 'Trigger'. Did you mean 'trigger'?"),
    ("GB('CommandReader').register(trigger='t', keyPrefix='k')",
     "register() got an unexpected keyword argument 'keyPrefix'. Did you mean 'keyprefix'?"),
    ("GB('CommandReader').register(trigger='t', inOrder=True)",
     "register() got an unexpected keyword argument 'inOrder'. Did you mean 'inorder'?"),
    # Checked before anything else, as CPython binds arguments before the function runs.
    ("GB().register(mode='fast', eventtypes=['set'])",
     "register() got an unexpected keyword argument 'eventtypes'. Did you mean 'eventTypes'?"),
    ("GB('PythonReader').register(trigger='t')", "register() got an unexpected keyword argument 'trigger'"),
])
def test_register_refuses_unknown_kwargs(raw, script, msg):
    assert_type_error(raw, script, msg)
    assert raw.call("RG.DUMPREGISTRATIONS") == []


@pytest.mark.parametrize("script, msg", [
    ("GB('KeysOnlyReader').run(pattern='a*')", "run() got an unexpected keyword argument 'pattern'"),
    ("GB('KeysOnlyReader').run('a*', Count=10)", "run() got an unexpected keyword argument 'Count'. Did you mean 'count'?"),
    ("GB().run(noscan=True)", "run() got an unexpected keyword argument 'noscan'. Did you mean 'noScan'?"),
    ("GB().run(readvalue=False)", "run() got an unexpected keyword argument 'readvalue'. Did you mean 'readValue'?"),
    ("GB().run(count=10)", "run() got an unexpected keyword argument 'count'"),
    ("GB('StreamReader').run('s', fromid='0-0')", "run() got an unexpected keyword argument 'fromid'. Did you mean 'fromId'?"),
    ("GB('ShardsIDReader').run(mode='async_local', someUnknownOption=1)",
     "run() got an unexpected keyword argument 'someUnknownOption'"),
    ("GB('PythonReader').run(lambda: iter([1]), convertTostr=False)",
     "run() got an unexpected keyword argument 'convertTostr'. Did you mean 'convertToStr'?"),
    ("GB('CommandReader').run(trigger='t')", "run() got an unexpected keyword argument 'trigger'"),
])
def test_run_refuses_unknown_kwargs(raw, script, msg):
    assert_type_error(raw, script, msg)
    assert raw.call("RG.DUMPEXECUTIONS") == []


@pytest.mark.parametrize("script, msg", [
    ("GB(Reader='KeysReader')", "unexpected keyword argument 'Reader'"),
    ("GearsBuilder('KeysReader', description='d')", "unexpected keyword argument 'description'"),
    ("createKeysOnlyReader(patern='a*')", "createKeysOnlyReader() got an unexpected keyword argument 'patern'"),
    ("log('x', Level='warning')", "log() got an unexpected keyword argument 'Level'. Did you mean 'level'?"),
    ("registerTE(1, lambda: 0, key='k')", "registerTE() got an unexpected keyword argument 'key'"),
])
def test_builder_and_functions_refuse_unknown_kwargs(raw, script, msg):
    text = script_error(raw, script)
    assert "TypeError: " in text and msg in text, text


def test_known_kwargs_are_still_taken(raw):
    raw.call("SET", "a1", "x")
    raw.call("SET", "a2", "y")
    assert raw.call("RG.PYEXECUTE", "GB('KeysOnlyReader').sort().run('a*', count=10, noScan=False, mode='async')") \
        == [[b"a1", b"a2"], []]
    assert raw.call("RG.PYEXECUTE", "GB('KeysOnlyReader').run('a1', noScan=True)") == [[b"a1"], []]
    assert raw.call("RG.PYEXECUTE", "GB().map(lambda r: r['key']).run('a1', noScan=True, readValue=False)") \
        == [[b"a1"], []]
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run(convertToStr=True, collect=True, mode='async_local')") \
        == [[b"1"], []]
    assert raw.call("RG.PYEXECUTE",
                    "GB().register(prefix='k*', eventTypes=['set'], keyTypes=['string'], readValue=True, "
                    "mode='async', onRegistered=lambda: None)\n"
                    "GB('StreamReader').register(prefix='s', batch=1, duration=0, onFailedPolicy='continue', "
                    "onFailedRetryInterval=1, trimStream=True)\n"
                    "GB('CommandReader').register(trigger='t', inorder=False, mode='async_local')\n"
                    "GB('CommandReader').register(hook='hset', keyprefix='h', mode='sync')\n") == Status("OK")
    assert len(raw.call("RG.DUMPREGISTRATIONS")) == 4


def test_unknown_kwarg_is_a_type_error_to_the_script(raw):
    got = run_value(raw, "out = []\n"
                         "for call in (lambda: GB().register(eventtypes=['set']),\n"
                         "             lambda: GB('KeysOnlyReader').run(pattern='*')):\n"
                         "    try:\n"
                         "        call()\n"
                         "    except TypeError as e:\n"
                         "        out.append(str(e))\n")
    assert got == ["register() got an unexpected keyword argument 'eventtypes'. Did you mean 'eventTypes'?",
                   "run() got an unexpected keyword argument 'pattern'"]
    # Nothing was registered by the refused call.
    assert raw.call("RG.DUMPREGISTRATIONS") == []


# --------------------------------------------------------------------------------------------
# 2. A trigger or a non-sync hook registered twice
# --------------------------------------------------------------------------------------------

def test_second_trigger_registration_is_refused(r, raw):
    rid = register_one(r, "GB('CommandReader').map(lambda x: 'first').register(trigger='x')")
    res = refusal(raw, "GB('CommandReader').map(lambda x: 'second').register(trigger='x')", "trigger already registered")
    assert res == [Error(f"{SHARD0}: trigger already registered")]
    # Also from a step callback (applied at once), and within one script.
    res = raw.call("RG.PYEXECUTE",
                   "GB('ShardsIDReader').map(lambda x: GB('CommandReader').register(trigger='x')).run()")
    assert res[0] == [] and len(res[1]) == 1, res
    assert res[1][0].endswith(tb_end("gears.error: trigger already registered").encode()), res
    refusal(raw, "GB('CommandReader').register(trigger='y')\nGB('CommandReader').register(trigger='y')",
            "trigger already registered in this session")
    assert [reg["id"] for reg in dump_registrations(r)] == [rid]
    assert raw.call("RG.TRIGGER", "x") == [b"first"]


def test_second_async_hook_is_refused(r, raw):
    rid = register_one(r, "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='async')")
    res = refusal(raw, "GB('CommandReader').map(lambda x: 'no').register(hook='set', mode='async')",
                  "Can not override a none sync registration")
    assert res == [Error(f"{SHARD0}: Can not override a none sync registration")]
    # Also when the new hook is sync: what matters is the mode of the hook already there.
    refusal(raw, "GB('CommandReader').map(lambda x: 'no').register(hook='SET', mode='sync')",
            "Can not override a none sync registration")
    refusal(raw, "GB('CommandReader').register(hook='get')\nGB('CommandReader').register(hook='get')",
            "Can not override a none sync registration which already created on this session")
    assert [reg["id"] for reg in dump_registrations(r)] == [rid]
    assert r.set("k", "v") is True
    assert r.get("k") == "v"


def test_sync_hooks_stack(r):
    first = register_one(r, "GB('CommandReader').map(lambda x: call_next(x[1] + ':1')).register(hook='get', mode='sync')")
    second = register_one(r, "GB('CommandReader').map(lambda x: call_next(x[1] + ':2')).register(hook='get', mode='sync')")
    assert first != second
    r.set("k:2:1", "stacked")
    assert r.get("k") == "stacked"


# --------------------------------------------------------------------------------------------
# 3. shardReaderCallback
# --------------------------------------------------------------------------------------------

def test_shard_reader_callback_is_a_global_yielding_the_shard_id(raw):
    got = run_value(raw, "import inspect\n"
                         "out = [inspect.isgeneratorfunction(shardReaderCallback), list(shardReaderCallback()),\n"
                         "       'shardReaderCallback' in globals()]\n")
    assert got == [True, ["1"], True]
    # What RedisGears' ShardsIDReader runs: the same records as the ShardsIDReader.
    assert raw.call("RG.PYEXECUTE", "GB('PythonReader').run(shardReaderCallback)") == [[b"1"], []]
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()") == [[b"1"], []]
    # Callable from the script body too.
    assert raw.call("RG.PYEXECUTE", "execute('SET', 'ids', repr(list(shardReaderCallback())))") == Status("OK")
    assert raw.call("GET", "ids") == b"['1']"


# --------------------------------------------------------------------------------------------
# 4. Misusing a gearsFuture: user-level errors, no private attribute names
# --------------------------------------------------------------------------------------------

def no_private_names(text):
    assert "_id" not in text and "attribute '_" not in text and "_settle" not in text, text


@pytest.mark.parametrize("call, msg", [
    ("gearsFuture.continueRun(1, 'v')", "TypeError: descriptor 'continueRun' for 'gearsFuture' objects doesn't apply to a 'int' object"),
    ("gearsFuture.continueFailed(object(), 'e')",
     "TypeError: descriptor 'continueFailed' for 'gearsFuture' objects doesn't apply to a 'object' object"),
    ("gearsFuture.__new__(gearsFuture).continueRun(1)", "gears.error: Future object was not created by gearsFuture()"),
    ("runCoroutine(asyncio.sleep(0), 'not a future')", "gears.error: runCoroutine future argument must be a gearsFuture"),
])
def test_future_misuse_in_a_step(raw, call, msg):
    res = pyexecute_raw(raw, f"GB('ShardsIDReader').map(lambda x: {call}).run()")
    assert res[0] == [] and len(res[1]) == 1, res
    text = res[1][0].decode()
    assert text.endswith(tb_end(msg)), text
    no_private_names(text)


def test_future_misuse_in_the_body(raw):
    text = script_error(raw, "gearsFuture.continueRun(1, 2)")
    assert text.endswith(tb_end("TypeError: descriptor 'continueRun' for 'gearsFuture' objects doesn't apply to a 'int' object")), text
    no_private_names(text)


def test_future_continued_twice_or_after_its_execution(server, r, raw):
    # The trigger `make` parks a record on a future kept in the session's globals; `cont` continues
    # it (twice: the second is refused); `late` continues it after its execution ended (no effect).
    script = (
        "futures = []\n"
        "def make(x):\n"
        "    f = gearsFuture()\n"
        "    futures.append(f)\n"
        "    return f\n"
        "def cont(x):\n"
        "    out = []\n"
        "    for i in range(2):\n"
        "        try:\n"
        "            futures[0].continueRun('done')\n"
        "            out.append('ok')\n"
        "        except Exception as e:\n"
        "            out.append(str(e))\n"
        "    return out\n"
        "def late(x):\n"
        "    futures[0].continueFailed('late')\n"
        "    return 'no error'\n"
        "GB('CommandReader').map(make).register(trigger='make', mode='async_local')\n"
        "GB('CommandReader').map(cont).register(trigger='cont', mode='sync')\n"
        "GB('CommandReader').map(late).register(trigger='late', mode='sync')\n"
    )
    assert pyexecute(r, script) == "OK"
    c = server.raw()
    c.send("RG.TRIGGER", "make")
    wait_until(lambda: any(st == "running" for _i, st, _reg in dump_executions(r)), what="make to wait on its future")
    assert raw.call("RG.TRIGGER", "cont") == [b"['ok', 'Can not continue with the same future twice']"]
    assert c.read() == [b"done"]
    assert raw.call("RG.TRIGGER", "late") == [b"no error"]
    for eid, st, _reg in dump_executions(r):
        assert st == "done", (eid, st)


# --------------------------------------------------------------------------------------------
# 5. Packages RedisGears users install with REQUIREMENTS
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["redis", "numpy", "requests", "pandas"])
def test_import_of_a_package_says_it_is_not_available(raw, name):
    text = script_error(raw, f"import {name}\n")
    assert text.endswith(tb_end(f"ModuleNotFoundError: No module named '{name}' (not available in the "
                                "rustgears sandbox: REQUIREMENTS/pip packages are not supported)")), text
    text = script_error(raw, f"from {name} import something\n")
    assert "REQUIREMENTS/pip packages are not supported" in text, text


def test_package_import_error_is_still_a_module_not_found_error(raw):
    got = run_value(raw, "out = []\n"
                         "try:\n"
                         "    import redis\n"
                         "except ImportError as e:\n"
                         "    out += [type(e).__name__, e.name, isinstance(e, ModuleNotFoundError)]\n"
                         "import importlib\n"
                         "try:\n"
                         "    importlib.import_module('numpy.linalg')\n"
                         "except ModuleNotFoundError as e:\n"
                         "    out += [e.name, str(e)]\n")
    assert got == ["ModuleNotFoundError", "redis", True, "numpy",
                   "No module named 'numpy' (not available in the rustgears sandbox: "
                   "REQUIREMENTS/pip packages are not supported)"]


def test_other_import_failures_keep_their_texts(raw):
    text = script_error(raw, "import socket\n")
    assert text.endswith(tb_end("ModuleNotFoundError: No module named 'socket' (not available in the rustgears sandbox)")), text
    # A missing submodule of a package that exists is a plain failure.
    text = script_error(raw, "import gears.nosuch\n")
    assert text.endswith(tb_end("ModuleNotFoundError: No module named 'gears.nosuch'")), text
    assert raw.call("RG.PYEXECUTE", "import json, redisgears, gears") == Status("OK")


# --------------------------------------------------------------------------------------------
# 6. A step that creates a gearsFuture and then raises
# --------------------------------------------------------------------------------------------

def test_run_step_creating_a_future_then_raising_fails_its_record(r, raw):
    script = (
        "def f(x):\n"
        "    fut = gearsFuture()\n"
        "    if x == 2:\n"
        "        raise Exception('boom after future')\n"
        "    return x\n"
        "GB('PythonReader').map(f).run(lambda: iter([1, 2, 3]))\n"
    )
    res = pyexecute_raw(raw, script)
    # The error ends the reading (as any error that reaches the end of the plan does).
    assert res[0] == [b"1"], res
    assert len(res[1]) == 1 and res[1][0].endswith(tb_end("Exception: boom after future").encode()), res
    # Unblocking: the execution ends (nothing waits for the dropped future) with the same result.
    eid = raw.call("RG.PYEXECUTE", script, "UNBLOCKING").decode()
    wait_until(lambda: status_of(r, eid) == "done", what="the execution to end")
    assert raw.call("RG.GETRESULTS", eid) == res


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_registered_step_creating_a_future_then_raising_counts_a_failure(r, raw, mode):
    # The step keeps its future in the session's globals and raises; the trigger `late`
    # continues that future afterwards, which has no effect.
    script = (
        "kept = []\n"
        "def f(r):\n"
        "    fut = gearsFuture()\n"
        "    kept.append(fut)\n"
        "    raise Exception('boom after future')\n"
        "def late(x):\n"
        "    kept[0].continueRun('late')\n"
        "    kept[0].continueFailed('late')\n"
        "    return len(kept)\n"
        f"GB().map(f).register(prefix='k*', mode='{mode}')\n"
        "GB('CommandReader').map(late).register(trigger='late', mode='sync')\n"
    )
    assert pyexecute(r, script) == "OK"
    rid = dump_registrations(r)[0]["id"]
    r.set("k1", "v")
    d = wait_stats(r, rid, numTriggered=1, numFailures=1)
    assert d["numSuccess"] == 0 and d["numAborted"] == 0, d
    assert d["lastError"].endswith(tb_end("Exception: boom after future")), d["lastError"]
    wait_until(lambda: all(st == "done" for _i, st, _reg in dump_executions(r)), what="the execution to end")
    (eid,) = [i for i, _st, reg in dump_executions(r) if reg == 1]
    results = raw.call("RG.GETRESULTS", eid)
    assert results[0] == [] and len(results[1]) == 1, results
    assert results[1][0].endswith(tb_end("Exception: boom after future").encode()), results
    # The dropped future continues nothing.
    assert raw.call("RG.TRIGGER", "late") == [b"1"]
    assert raw.call("RG.GETRESULTS", eid) == results
    d = stats(r, rid)
    assert (d["numTriggered"], d["numSuccess"], d["numFailures"]) == (1, 0, 1), d
