"""Runtime (docs/python-api.md#script-environment, #runtime-functions,
docs/commands.md#python-error-texts): the script environment and sessions, execute(), atomic(), log(), configGet()/gearsConfigGet(), hashtag(), flat_error(), the `redisgears` module, the
exception types, the Python standard library available to scripts, and Redis staying responsive
while a large execution runs.
"""

import re

import pytest

from conftest import Error, Status, TB_START, assert_gears_error, dump_executions, pyexecute, script_error, status_of, tb_end, wait_status, wait_until


def one(r, expr, prelude=""):
    """Evaluate `expr` inside an execution step; return str(value) as the single result."""
    script = prelude + f"GB('ShardsIDReader').map(lambda _x: {expr}).run()\n"
    results, errors = pyexecute(r, script)
    assert errors == [], errors
    assert len(results) == 1, results
    return results[0]


def body(r, code, key="out"):
    """Run `code` as a script body; it must store its answer with execute('SET', key, ...)."""
    assert pyexecute(r, code) == "OK"
    return r.get(key)


# ------------------------------------------------------------------------------------------
# 2.1 Script environment and sessions
# ------------------------------------------------------------------------------------------

GLOBAL_NAMES = ['GearsBuilder', 'GB', 'execute', 'atomic', 'log', 'configGet', 'gearsConfigGet', 'hashtag', 'isAsyncAllow', 'flat_error', 'createKeysOnlyReader', 'redisgears', 'rg', 'copy', 'Log', 'ConfigGet', 'GearsConfigGet',
                'registerTE', 'call_next', 'get_command', 'override_reply', 'gearsFuture', 'createFuture',
                'setFutureResults', 'setFutureException', 'runCoroutine', 'asyncio']


def test_session_global_names(r):
    code = f"execute('SET', 'out', repr([n for n in {GLOBAL_NAMES!r} if n not in globals()]))"
    assert body(r, code) == "[]"


def test_global_modules_are_modules(r):
    code = (
        "import types\n"
        "execute('SET', 'out', repr([type(m) is types.ModuleType for m in (redisgears, rg, copy)]"
        " + [rg is redisgears, copy.deepcopy([1]) == [1]]))\n"
    )
    assert body(r, code) == "[True, True, True, True, True]"


def test_name_is_not_main(r):
    code = (
        "execute('SET', 'out', __name__)\n"
        "if __name__ == '__main__':\n"
        "    execute('SET', 'main', 'ran')\n"
    )
    assert body(r, code) == "not_main"
    assert r.get("main") is None


def test_each_script_gets_its_own_globals(r):
    code = (
        "try:\n"
        "    counter += 1\n"
        "except NameError:\n"
        "    counter = 0\n"
        "execute('SET', 'out', counter)\n"
    )
    assert body(r, code) == "0"
    assert body(r, code) == "0"  # identical code, still a fresh globals dict
    assert pyexecute(r, "leaked = 1") == "OK"
    assert one(r, "'leaked' in globals()") == "False"


def test_functions_of_one_script_share_globals(r):
    script = (
        "total = 0\n"
        "def add(x):\n"
        "    global total\n"
        "    total += x\n"
        "def read(a, x):\n"
        "    return total\n"
        "GB('PythonReader').foreach(add).accumulate(read).run(lambda: iter([1, 2, 3]))\n"
    )
    assert pyexecute(r, script) == [["6"], []]


def test_step_callbacks_see_script_globals(r):
    script = (
        "FACTOR = 3\n"
        "def helper(x):\n"
        "    return x * FACTOR\n"
        "GB('PythonReader').map(lambda x: helper(x)).run(lambda: iter([1, 2]))\n"
    )
    assert pyexecute(r, script) == [["3", "6"], []]


@pytest.mark.module_args("ExecutionThreads", "1")
def test_imported_modules_shared_by_process(r):
    # RedisGears: one sys.modules for the whole process (docs/python-api.md#script-environment). Ours: one per worker interpreter (VMs
    # never share objects), so with a single worker every script sees the same modules.
    assert pyexecute(r, "import json\njson._rg_shared_marker = 42") == "OK"
    for _ in range(6):
        assert one(r, "getattr(json, '_rg_shared_marker', None)", prelude="import json\n") == "42"


def test_print_does_not_fail(r, server):
    assert pyexecute(r, "print('hello from print')\nprint('a', 1, None, sep='-')") == "OK"
    assert pyexecute(r, "GB('ShardsIDReader').foreach(lambda x: print('in step', x)).run()") == [["1"], []]
    server.wait_log("hello from print")


def test_gb_and_register_te_refused_on_script_threads(r):
    # Only relevant if the sandbox lets scripts create threads; without `threading` there is
    # nothing to check.
    code = (
        "res = []\n"
        "try:\n"
        "    import threading\n"
        "    def worker():\n"
        "        for f in (lambda: GB(), lambda: registerTE(1, lambda: None)):\n"
        "            try:\n"
        "                f()\n"
        "                res.append('no error')\n"
        "            except Exception as e:\n"
        "                res.append(str(e))\n"
        "    t = threading.Thread(target=worker)\n"
        "    t.start()\n"
        "    t.join()\n"
        "except Exception:\n"
        "    res = None\n"
        "execute('SET', 'out', repr(res))\n"
    )
    out = body(r, code)
    # registerTE comes with registrations (tier 3): until then the name does not exist.
    assert out in ("None", repr(["Can not create a gearsCtx on a python created thread",
                                 "can not create time event on a python created thread"]),
                   repr(["Can not create a gearsCtx on a python created thread",
                         "name 'registerTE' is not defined"])), out


def test_second_run_in_one_script(r, raw):
    assert_gears_error(raw, "GB('ShardsIDReader').run()\nGB('ShardsIDReader').run()",
                       "Can not run more then 1 executions in a single script")
    assert_gears_error(raw, "g = GB('ShardsIDReader')\ng.run()\ng.run()",
                       "Can not run more then 1 executions in a single script")
    wait_until(lambda: dump_executions(r) == [], what="the failed scripts' executions to be dropped")


def test_second_run_error_can_be_caught(r):
    script = (
        "GB('ShardsIDReader').run()\n"
        "try:\n"
        "    GB('ShardsIDReader').run()\n"
        "except Exception as e:\n"
        "    execute('SET', 'err', type(e).__module__ + '.' + type(e).__name__ + ': ' + str(e))\n"
    )
    assert pyexecute(r, script) == [["1"], []]
    assert r.get("err") == "gears.error: Can not run more then 1 executions in a single script"


def test_run_from_callback_is_independent(r):
    script = (
        "def start(x):\n"
        "    GB('PythonReader').foreach(lambda y: execute('SET', 'inner', y)).run(lambda: iter(['ran']))\n"
        "    return x\n"
        "GB('ShardsIDReader').map(start).run()\n"
    )
    assert pyexecute(r, script) == [["1"], []]
    wait_until(lambda: r.get("inner") == "ran", what="the inner execution to run")
    wait_until(lambda: dump_executions(r) == [], what="the inner execution to be dropped")


# ------------------------------------------------------------------------------------------
# 2.6 execute()
# ------------------------------------------------------------------------------------------


def test_execute_bytes_and_bytearray_args_are_raw(raw):
    script = (
        "execute('SET', 'b', b'\\xff\\x00z')\n"
        "execute('SET', 'ba', bytearray(b'\\xfe\\x01'))\n"
        "execute(b'SET'.decode(), b'k\\x00', 'v')\n"
    )
    assert raw.call("RG.PYEXECUTE", script) == Status("OK")
    assert raw.call("GET", "b") == b"\xff\x00z"
    assert raw.call("GET", "ba") == b"\xfe\x01"
    assert raw.call("GET", b"k\x00") == b"v"


@pytest.mark.parametrize("expr, stored", [
    ("42", "42"),
    ("-7", "-7"),
    ("1.5", "1.5"),
    ("None", "None"),
    ("True", "True"),
    ("[1, 'a']", "[1, 'a']"),
    ("{'a': 1}", "{'a': 1}"),
    ("(1,)", "(1,)"),
    ("'text'", "text"),
    ("'\u00e9t\u00e9'", "\u00e9t\u00e9"),
])
def test_execute_other_args_are_str(r, expr, stored):
    assert pyexecute(r, f"execute('SET', 'k', {expr})") == "OK"
    assert r.get("k") == stored


def test_execute_reply_mapping(r):
    r.set("s", "v")
    r.rpush("l", "a", "b")
    r.hset("h", "f", "1")
    exprs = [
        "execute('GET', 's')",
        "execute('GET', 'missing')",
        "execute('INCR', 'n')",
        "execute('LRANGE', 'l', 0, -1)",
        "execute('SET', 'x', 'y')",
        "execute('PING')",
        "execute('HGETALL', 'h')",
        "execute('EVAL', \"return {1, {'x', 2}, redis.error_reply('ERR nested')}\", 0)",
        "execute()",
        "execute('LRANGE', 'missing', 0, -1)",
    ]
    code = "execute('SET', 'out', repr([" + ", ".join(exprs) + "]))"
    assert body(r, code) == repr(["v", None, 1, ["a", "b"], "OK", "PONG", ["f", "1"],
                                   [1, ["x", 2], "ERR nested"], [], []])


def test_execute_reply_types(r):
    code = (
        "execute('SET', 's', 'v')\n"
        "execute('SET', 'out', repr([type(v).__name__ for v in "
        "(execute('GET', 's'), execute('SET', 'x', 'y'), execute('INCR', 'n'), execute('KEYS', 'nothing'))]))\n"
    )
    assert body(r, code) == "['str', 'str', 'int', 'list']"


def test_execute_non_utf8_reply_is_bytearray(raw):
    raw.call("SET", "bin", b"\xff")
    script = "GB('ShardsIDReader').map(lambda x: repr(execute('GET', 'bin'))).run()"
    assert raw.call("RG.PYEXECUTE", script) == [[b"bytearray(b'\\xff')"], []]


def test_execute_error_reply_raises_gears_error(r, raw):
    code = (
        "try:\n"
        "    execute('GET')\n"
        "except Exception as e:\n"
        "    execute('SET', 'out', repr([type(e).__module__, type(e).__name__, str(e),"
        " isinstance(e, redisgears.GearsError)]))\n"
    )
    assert body(r, code) == repr(["gears", "error", "ERR wrong number of arguments for 'get' command", True])
    text = script_error(raw, "execute('GET')")
    assert text.startswith(TB_START), text
    assert text.endswith(tb_end("gears.error: ERR wrong number of arguments for 'get' command")), text


def test_execute_wrongtype_error(r):
    r.set("s", "v")
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('LPUSH', 's', 'x')).run()")
    assert results == []
    assert len(errors) == 1
    assert errors[0].endswith(tb_end(
        "gears.error: WRONGTYPE Operation against a key holding the wrong kind of value")), errors


def test_execute_failed_call_raises_gears_error(r):
    code = (
        "try:\n"
        "    execute('NO_SUCH_COMMAND_X', 'a')\n"
        "    execute('SET', 'out', 'no error')\n"
        "except Exception as e:\n"
        "    execute('SET', 'out', type(e).__module__ + '.' + type(e).__name__)\n"
    )
    assert body(r, code) == "gears.error"


@pytest.mark.parametrize("cmd", ["1", "b'GET'", "None", "['GET']"])
def test_execute_command_must_be_string(raw, cmd):
    assert_gears_error(raw, f"execute({cmd}, 'k')", "the given command must be a string")


def test_execute_command_aliases(r):
    assert pyexecute(r, "redisgears.executeCommand('SET', 'a', '1')\nrg.executeCommand('SET', 'b', '2')") == "OK"
    assert r.mget("a", "b") == ["1", "2"]


def test_execute_nested_pyexecute_refused(r):
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('RG.PYEXECUTE', '1')).run()")
    assert results == []
    assert len(errors) == 1
    assert errors[0].endswith(tb_end(
        "gears.error: Can not run gears inside a multi exec, lua, or when blocking is not allowed")), errors


# ------------------------------------------------------------------------------------------
# 2.6 atomic()
# ------------------------------------------------------------------------------------------


def test_atomic_block_writes(r):
    code = (
        "with atomic():\n"
        "    execute('SET', 'a', '1')\n"
        "    execute('INCR', 'a')\n"
        "execute('SET', 'out', execute('GET', 'a'))\n"
    )
    assert body(r, code) == "2"


def test_atomic_in_step(r):
    script = (
        "def step(x):\n"
        "    with atomic():\n"
        "        execute('INCR', 'c')\n"
        "        return execute('INCR', 'c')\n"
        "GB('PythonReader').map(step).run(lambda: iter([1, 2]))\n"
    )
    assert pyexecute(r, script) == [["2", "4"], []]


def test_atomic_nesting_refused(raw):
    script = "with atomic():\n    with atomic():\n        pass\n"
    text = script_error(raw, script)
    assert text.startswith(TB_START), text
    assert text.endswith(": Already inside an atomic block\\n']"), text


def test_atomic_nesting_error_does_not_break_outer_block(r):
    code = (
        "with atomic():\n"
        "    try:\n"
        "        with atomic():\n"
        "            pass\n"
        "    except Exception as e:\n"
        "        msg = str(e)\n"
        "    execute('SET', 'out', msg)\n"
        "with atomic():\n"
        "    execute('SET', 'again', 'yes')\n"
    )
    assert body(r, code) == "Already inside an atomic block"
    assert r.get("again") == "yes"


def test_is_in_atomic_block(r):
    code = (
        "res = [redisgears.isInAtomicBlock()]\n"
        "with atomic():\n"
        "    res.append(redisgears.isInAtomicBlock())\n"
        "res.append(redisgears.isInAtomicBlock())\n"
        "with redisgears.atomicCtx():\n"
        "    res.append(redisgears.isInAtomicBlock())\n"
        "execute('SET', 'out', repr(res))\n"
    )
    assert body(r, code) == "[False, True, False, True]"


def test_atomic_block_sees_no_other_client(server, r):
    # Every EXISTS inside the block sees the same state although another client writes 'ext'
    # meanwhile: its SET waits until the block ends.
    script = (
        "import time\n"
        "def step(x):\n"
        "    execute('SET', 'started', '1')\n"
        "    seen = []\n"
        "    with atomic():\n"
        "        for i in range(100):\n"
        "            seen.append(execute('EXISTS', 'ext'))\n"
        "            time.sleep(0.01)\n"
        "    return repr(sorted(set(seen)))\n"
        "GB('ShardsIDReader').map(step).run()\n"
    )
    eid = r.execute_command("RG.PYEXECUTE", script, "UNBLOCKING")
    other = server.client()
    wait_until(lambda: other.get("started") == "1", what="the step to start")
    other.set("ext", "1")
    wait_status(r, eid, "done")
    results, errors = r.execute_command("RG.GETRESULTS", eid)
    assert errors == []
    assert results in (["[0]"], ["[1]"]), results


# ------------------------------------------------------------------------------------------
# 2.6 log()
# ------------------------------------------------------------------------------------------


def log_line(server, text):
    for line in server.log().splitlines():
        if line.endswith(text):
            return line
    return None


def test_log_default_notice(r, server):
    assert pyexecute(r, "log('hello notice')") == "OK"
    server.wait_log("GEARS: hello notice")
    assert re.search(r" \* .*GEARS: hello notice$", log_line(server, "GEARS: hello notice")), server.log_tail()


def test_log_warning_level(r, server):
    assert pyexecute(r, "log('hello warning', 'warning')\nlog('kw warning', level='warning')") == "OK"
    server.wait_log("GEARS: kw warning")
    assert re.search(r" # .*GEARS: hello warning$", log_line(server, "GEARS: hello warning"))
    assert re.search(r" # .*GEARS: kw warning$", log_line(server, "GEARS: kw warning"))


def test_log_debug_and_verbose_follow_redis_loglevel(r, server):
    assert pyexecute(r, "log('dbg hidden', 'debug')\nlog('verbose hidden', 'verbose')\nlog('after hidden')") == "OK"
    server.wait_log("GEARS: after hidden")
    assert "dbg hidden" not in server.log()
    assert "verbose hidden" not in server.log()
    r.config_set("loglevel", "debug")
    assert pyexecute(r, "log('dbg shown', 'debug')\nlog('verbose shown', 'verbose')") == "OK"
    server.wait_log("GEARS: verbose shown")
    assert re.search(r" \. .*GEARS: dbg shown$", log_line(server, "GEARS: dbg shown"))
    assert re.search(r" - .*GEARS: verbose shown$", log_line(server, "GEARS: verbose shown"))


def test_log_in_step_and_module_alias(r, server):
    assert pyexecute(r, "GB('ShardsIDReader').foreach(lambda x: log('from step ' + x)).run()") == [["1"], []]
    assert pyexecute(r, "redisgears.log('from module')") == "OK"
    server.wait_log("GEARS: from step 1")
    server.wait_log("GEARS: from module")


def test_log_legacy_level_first(r, server):
    assert pyexecute(r, "log('warning', 'legacy form message')") == "OK"
    server.wait_log("GEARS: legacy form message")
    assert re.search(r" # .*GEARS: legacy form message$", log_line(server, "GEARS: legacy form message"))


@pytest.mark.parametrize("args, msg", [
    ("", "log function must get a log message as input"),
    ("'a', 'notice', 'x'", "log function must get a log message as input"),
    ("1", "Log message must be a string"),
    ("None", "Log message must be a string"),
    ("'m', 1", "Log level must be a sting (debug/verbose/notice/warning)"),
    ("'m', level=None", "Log level must be a sting (debug/verbose/notice/warning)"),
    ("'m', 'loud'", "Log level should be one of the following : debug,verbose,notice,warning"),
    ("'m', level='WARNING!'", "Log level should be one of the following : debug,verbose,notice,warning"),
])
def test_log_errors(raw, args, msg):
    assert_gears_error(raw, f"log({args})", msg)


def test_deprecated_wrappers(r, server):
    code = (
        "Log('old log call')\n"
        "execute('SET', 'out', repr([ConfigGet('MyKey'), GearsConfigGet('nokey', 'dflt')]))\n"
    )
    assert body(r, code) == "[None, 'dflt']"
    server.wait_log("GEARS: old log call")
    for old, new in [("Log", "log"), ("ConfigGet", "configGet"), ("GearsConfigGet", "gearsConfigGet")]:
        text = f"{old} is deprecated, use {new} instead"
        server.wait_log(text)
        lines = [line for line in server.log().splitlines() if text in line]
        assert lines and all(" # " in line for line in lines), lines  # warning level


# ------------------------------------------------------------------------------------------
# 2.6 configGet, gearsConfigGet
# ------------------------------------------------------------------------------------------


@pytest.mark.module_args("MyKey", "MyValue", "PythonAttemptTraceback", "1")
def test_config_get(r):
    code = (
        "execute('SET', 'out', repr([configGet('MyKey'), configGet('mykey'), configGet('nokey'),"
        " configGet('MaxExecutions'), configGet('ExecutionThreads'), configGet('PythonAttemptTraceback'),"
        " configGet('CreateVenv'), redisgears.config_get('MyKey')]))\n"
    )
    assert body(r, code) == repr(["MyValue", None, None, None, None, "1", None, "MyValue"])


def test_config_get_sees_configset(r):
    assert r.execute_command("RG.CONFIGSET", "Other", "val", "PythonAttemptTraceback", "1") == [
        "OK - value was saved in extra config dictionary", "OK - value was saved in extra config dictionary"]
    assert one(r, "[configGet('Other'), configGet('PythonAttemptTraceback')]") == "['val', '1']"


@pytest.mark.module_args("MyKey", "MyValue")
def test_gears_config_get(r):
    code = (
        "execute('SET', 'out', repr([gearsConfigGet('MyKey'), gearsConfigGet('MyKey', 'd'),"
        " gearsConfigGet('nokey'), gearsConfigGet('nokey', 'd'), gearsConfigGet('MaxExecutions', 5)]))\n"
    )
    assert body(r, code) == repr(["MyValue", "MyValue", None, "d", 5])


@pytest.mark.parametrize("args, msg", [
    ("", "get_config function must get a single key input"),
    ("'a', 'b'", "get_config function must get a single key input"),
    ("1", "get_config key must be a string"),
    ("None", "get_config key must be a string"),
])
def test_config_get_errors(raw, args, msg):
    assert_gears_error(raw, f"configGet({args})", msg)


# ------------------------------------------------------------------------------------------
# 2.6 hashtag, flat_error, isAsyncAllow
# ------------------------------------------------------------------------------------------


def test_hashtag(r):
    assert body(r, "execute('SET', 'out', hashtag())") == "06S"
    assert one(r, "[hashtag(), redisgears.getMyHashTag()]") == "['06S', '06S']"


def test_flat_error_in_script_is_exact_text(raw):
    assert script_error(raw, "flat_error('plain message')") == "plain message"
    assert script_error(raw, "flat_error(5)") == "5"
    assert script_error(raw, "redisgears.flatError('via module')") == "via module"
    assert script_error(raw, "raise redisgears.GearsFlatError('raised directly')") == "raised directly"


def test_flat_error_in_step(r):
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: flat_error('step failed: ' + x)).run()") == [
        [], ["step failed: 1"]]


def test_flat_error_type(r):
    code = (
        "try:\n"
        "    flat_error('m')\n"
        "except Exception as e:\n"
        "    execute('SET', 'out', repr([type(e).__module__, type(e).__name__, str(e),"
        " type(e) is redisgears.GearsFlatError]))\n"
    )
    assert body(r, code) == repr(["gears", "flat_error", "m", True])


def test_flat_error_wrong_args(raw):
    assert_gears_error(raw, "flat_error()", "not enough arguments for time flat error")
    assert_gears_error(raw, "flat_error('a', 'b')", "not enough arguments for time flat error")


def test_is_async_allow(r):
    assert body(r, "execute('SET', 'out', repr([isAsyncAllow(), redisgears.isAsyncAllow()]))") == "[False, False]"
    assert one(r, "[isAsyncAllow(), redisgears.isAsyncAllow()]") == "[True, True]"


# ------------------------------------------------------------------------------------------
# The redisgears module and the exception types
# ------------------------------------------------------------------------------------------

# Left out until registrations and asynchrony exist: ['registerTimeEvent', 'gearsCtx', 'gearsFutureCtx', 'callNext', 'getCommand', 'overrideReply']
REDISGEARS_NAMES = ['executeCommand', 'log', 'config_get', 'getMyHashTag', 'atomicCtx', 'isAsyncAllow', 'flatError', 'isInAtomicBlock', 'GearsError', 'GearsForceStopped', 'GearsFlatError']


def test_redisgears_module_names(r):
    code = (
        "import redisgears as imported\n"
        f"missing = [n for n in {REDISGEARS_NAMES!r} if not hasattr(redisgears, n)]\n"
        "execute('SET', 'out', repr([missing, imported is redisgears]))\n"
    )
    assert body(r, code) == "[[], True]"


def test_redisgears_aliases_behave_like_globals(r):
    code = (
        "execute('SET', 'cfg', 'x')\n"
        "execute('SET', 'out', repr([redisgears.executeCommand('GET', 'cfg'), redisgears.getMyHashTag(),"
        " redisgears.config_get('nokey'), redisgears.isInAtomicBlock()]))\n"
    )
    assert body(r, code) == "['x', '06S', None, False]"


def test_exception_types(r):
    code = (
        "E, F, S = redisgears.GearsError, redisgears.GearsFlatError, redisgears.GearsForceStopped\n"
        "execute('SET', 'out', repr([\n"
        "    [E.__module__, E.__name__], [F.__module__, F.__name__], [S.__module__, S.__name__],\n"
        "    issubclass(E, Exception), issubclass(F, Exception), issubclass(S, BaseException)]))\n"
    )
    assert body(r, code) == repr([["gears", "error"], ["gears", "flat_error"], ["gears", "forcestopped"],
                                  True, True, True])


def test_gears_error_is_raised_by_module(r):
    code = (
        "try:\n"
        "    GB(1)\n"
        "except redisgears.GearsError as e:\n"
        "    execute('SET', 'out', str(e))\n"
    )
    assert body(r, code) == "reader argument must be a string"


def test_gears_error_can_be_raised_by_script(raw):
    text = script_error(raw, "raise redisgears.GearsError('mine')")
    assert text == ("['Traceback (most recent call last):\\n', "
                    "'  File \"<string>\", line 1, in <module>\\n', 'gears.error: mine\\n']")


# ------------------------------------------------------------------------------------------
# Error text formats (docs/commands.md#python-error-texts) as they appear in script replies and in `errors`
# ------------------------------------------------------------------------------------------


def test_error_in_nested_function_traceback(r):
    script = (
        "def inner(x):\n"
        "    raise ValueError('bad ' + str(x))\n"
        "def outer(x):\n"
        "    return inner(x)\n"
        "GB('PythonReader').map(outer).run(lambda: iter([1]))\n"
    )
    assert pyexecute(r, script) == [[], [
        "['Traceback (most recent call last):\\n', "
        "'  File \"<string>\", line 4, in outer\\n', "
        "'  File \"<string>\", line 2, in inner\\n', "
        "'ValueError: bad 1\\n']"
    ]]


@pytest.mark.module_args("PythonAttemptTraceback", "0")
def test_no_traceback_form_when_disabled(r, raw):
    assert script_error(raw, "undefined_name") == \
        "Error type: <class 'NameError'>, Value: name 'undefined_name' is not defined"
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: undefined_name).run()") == [
        [], ["Error type: <class 'NameError'>, Value: name 'undefined_name' is not defined"]]
    assert script_error(raw, "GB(1)") == \
        "Error type: <class 'gears.error'>, Value: reader argument must be a string"
    assert script_error(raw, "flat_error('still flat')") == "still flat"


# ------------------------------------------------------------------------------------------
# Python standard library for scripts; sandbox
# ------------------------------------------------------------------------------------------

STDLIB_SCRIPT = r"""
import json, re, math, random, time, datetime, collections, itertools, functools, string, heapq
import bisect, copy, operator
res = []
res.append(json.loads(json.dumps({'a': [1, 2.5, None, True]})) == {'a': [1, 2.5, None, True]})
res.append(json.dumps({'b': 1, 'a': 'x'}, sort_keys=True) == '{"a": "x", "b": 1}')
res.append(re.sub(r'(\d+)', r'<\1>', 'a1b22') == 'a<1>b<22>')
res.append(re.match(r'^user:(\w+)$', 'user:bob').group(1) == 'bob')
res.append(math.isclose(math.sqrt(2) ** 2, 2) and math.floor(2.7) == 2 and math.pi > 3.14)
random.seed(7)
a = [random.random() for _ in range(3)]
random.seed(7)
res.append(a == [random.random() for _ in range(3)] and 1 <= random.randint(1, 6) <= 6)
res.append(isinstance(time.time(), float) and time.time() > 1600000000)
res.append(datetime.date(2024, 2, 28) + datetime.timedelta(days=1) == datetime.date(2024, 2, 29))
res.append(datetime.datetime(2020, 1, 2, 3, 4, 5).isoformat() == '2020-01-02T03:04:05')
res.append(collections.Counter('abca').most_common(1) == [('a', 2)])
res.append(list(collections.OrderedDict([('x', 1), ('y', 2)])) == ['x', 'y'])
res.append(collections.defaultdict(int)['missing'] == 0 and collections.namedtuple('P', 'x y')(1, 2).y == 2)
res.append(list(itertools.chain([1], [2, 3])) == [1, 2, 3] and list(itertools.islice(itertools.count(), 3)) == [0, 1, 2])
res.append(functools.reduce(operator.add, [1, 2, 3]) == 6 and functools.partial(pow, 2)(3) == 8)
res.append(string.ascii_lowercase[:3] == 'abc' and string.Template('$x!').substitute(x='hi') == 'hi!')
h = [5, 1, 3]
heapq.heapify(h)
res.append(heapq.heappop(h) == 1 and heapq.nsmallest(2, [4, 2, 9]) == [2, 4])
res.append(bisect.bisect_left([1, 3, 5], 4) == 2)
d = {'a': [1]}
c = copy.deepcopy(d)
c['a'].append(2)
res.append(d == {'a': [1]} and copy.copy([1, 2]) == [1, 2])
res.append(operator.itemgetter(1)([5, 6]) == 6 and operator.attrgetter('real')(3) == 3)
execute('SET', 'out', repr(res))
"""


def test_stdlib_modules_work(r):
    assert body(r, STDLIB_SCRIPT) == repr([True] * 19)


def test_stdlib_in_step(r):
    script = "import json\nGB('PythonReader').map(lambda x: json.dumps(x)).run(lambda: iter([{'a': 1}]))\n"
    assert pyexecute(r, script) == [['{"a": 1}'], []]


@pytest.mark.parametrize("mod", ["socket", "subprocess"])
def test_network_and_process_modules_fail(r, mod):
    code = (
        "try:\n"
        f"    import {mod}\n"
        "    execute('SET', 'out', 'imported')\n"
        "except Exception as e:\n"
        "    execute('SET', 'out', 'failed')\n"
    )
    assert body(r, code) == "failed"


def test_os_is_inert(r):
    code = (
        "try:\n"
        "    import os\n"
        "except ImportError:\n"
        "    os = None\n"
        "res = []\n"
        "if os is not None:\n"
        "    for f in (lambda: os.listdir('/'), lambda: os.system('echo x')):\n"
        "        try:\n"
        "            f()\n"
        "            res.append('no error')\n"
        "        except Exception:\n"
        "            res.append('raised')\n"
        "    res.append(os.environ == {})\n"
        "else:\n"
        "    res = ['raised', 'raised', True]\n"
        "execute('SET', 'out', repr(res))\n"
    )
    assert body(r, code) == "['raised', 'raised', True]"


# ------------------------------------------------------------------------------------------
# Done-when: Redis answers other clients while a big execution runs (docs/commands.md#rgpyexecute)
# ------------------------------------------------------------------------------------------


def test_ping_answered_during_large_countby(server, r):
    r.execute_command("DEBUG", "POPULATE", "100000")
    assert r.dbsize() == 100000
    eid = r.execute_command("RG.PYEXECUTE", "GB().map(lambda r: r['value']).countby().run()", "UNBLOCKING")
    pinger = server.client()
    poller = server.client()
    answered_while_running = 0
    states = []

    def done():
        nonlocal answered_while_running
        before = status_of(poller, eid)
        if before in ("done", "aborted"):
            states.append(before)
            return True
        assert pinger.ping() is True
        after = status_of(poller, eid)
        if before == "running" and after == "running":
            answered_while_running += 1
        return False

    wait_until(done, timeout=600, interval=0.01, what=f"execution {eid} to finish")
    assert states == ["done"]
    assert answered_while_running >= 1
    results, errors = r.execute_command("RG.GETRESULTS", eid)
    assert errors == []
    assert len(results) == 100000
    assert results[0].startswith("{'key': 'value:") and results[0].endswith("', 'value': 1}"), results[0]
