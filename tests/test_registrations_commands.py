"""CommandReader registrations (docs/python-api.md#register, docs/commands.md#rgtrigger): triggers called
with RG.TRIGGER / RG.TRIGGERONKEY, sync and non-sync, their replies and errors (MULTI, Lua, execute()),
inorder; command hooks with keyprefix, call_next() chains, where hooks apply, and every error text.

Every wait is a polling loop with a generous deadline; nothing here measures speed.
"""

import threading

import pytest

from conftest import (
    SHARD0,
    Error,
    RawConnection,
    Status,
    TB_START,
    assert_gears_error,
    blocked_clients,
    pyexecute,
    tb_end,
    wait_until,
)
from test_registrations_keys import dump_registrations, register_one, stats, wait_stats

NON_SYNC = "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading."


def trigger(r, steps="", trigger="t", extra=""):
    return register_one(r, f"GB('CommandReader'){steps}.register(trigger={trigger!r}{extra})")


def hook(r, steps, command="hset", extra=", mode='sync'"):
    return register_one(r, f"GB('CommandReader'){steps}.register(hook={command!r}{extra})")


def refused(raw, script, msg):
    """The registration is refused with msg: by register() itself (the script fails with gears.error) or,
    when found while applying, as an array of error replies naming the shard."""
    before = [e[1] for e in raw.call("RG.DUMPREGISTRATIONS")]
    res = raw.call("RG.PYEXECUTE", script)
    if type(res) is Error:
        assert res.endswith(tb_end("gears.error: " + msg)), res
    else:
        assert isinstance(res, list) and len(res) == 1 and type(res[0]) is Error, res
        assert msg in res[0] and SHARD0 in res[0], res
    assert [e[1] for e in raw.call("RG.DUMPREGISTRATIONS")] == before
    return res


# --------------------------------------------------------------------------------------------
# Triggers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "async_local", "sync"])
def test_trigger_record_and_reply(r, raw, mode):
    rid = trigger(r, extra=f", mode={mode!r}")
    assert raw.call("RG.TRIGGER", "t", "a", "b") == [b"['t', 'a', 'b']"]
    assert raw.call("RG.TRIGGER", "t") == [b"['t']"]
    assert raw.call("RG.TRIGGERONKEY", "t", "k", "a") == [b"['t', 'k', 'a']"]
    # the counters may be updated just after the reply
    d = wait_stats(r, rid, numTriggered=3, numSuccess=3)
    assert d["mode"] == mode


def test_trigger_record_types(raw, r):
    trigger(r, ".map(lambda x: repr(x))")
    assert raw.call("RG.TRIGGER", "t", b"\xff", "\u00e9") == [b"['t', bytearray(b'\\xff'), '\xc3\xa9']"]


def test_trigger_record_is_a_list(raw, r):
    trigger(r, ".map(lambda x: type(x).__name__)")
    assert raw.call("RG.TRIGGER", "t", "1") == [b"list"]


def test_trigger_reply_conversion(raw, r):
    trigger(r, ".flatmap(lambda x: x[1:])", trigger="str")
    # flatmap emits a returned list in reverse order
    assert raw.call("RG.TRIGGER", "str", "+OK", "-bad", "x") == [b"x", Error("bad"), Status("OK")]
    trigger(r, ".map(lambda x: len(x))", trigger="int", extra=", convertToStr=False")
    assert raw.call("RG.TRIGGER", "int", "a", "b") == [3]
    trigger(r, ".count()", trigger="count")
    assert raw.call("RG.TRIGGER", "count") == [b"1"]
    trigger(r, ".filter(lambda x: False)", trigger="none")
    assert raw.call("RG.TRIGGER", "none") == []


def test_trigger_error_is_an_error_reply(raw, r):
    trigger(r, ".map(lambda x: flat_error('boom'))", trigger="flat")
    assert raw.call("RG.TRIGGER", "flat") == Error("boom")
    register_one(r, "def f(x):\n    raise ValueError('failed in the trigger')\nGB('CommandReader').map(f).register(trigger='tb')\n")
    res = raw.call("RG.TRIGGER", "tb")
    assert type(res) is Error and res.startswith(TB_START) and res.endswith(tb_end("ValueError: failed in the trigger")), res


def test_trigger_error_wins_over_results(raw, r):
    rid = trigger(r, ".flatmap(lambda x: x[1:]).map(lambda a: flat_error('bad ' + a) if a == 'b' else a)")
    assert raw.call("RG.TRIGGER", "t", "a", "b") == Error("bad b")
    assert wait_stats(r, rid, numFailures=1)["lastError"] == "bad b"


def test_trigger_executions_are_dropped_after_the_reply(r, raw):
    trigger(r)
    for _ in range(3):
        raw.call("RG.TRIGGER", "t")
    assert r.execute_command("RG.DUMPEXECUTIONS") == []


def test_trigger_names_are_case_sensitive(raw, r):
    trigger(r, trigger="T1")
    assert raw.call("RG.TRIGGER", "t1") == Error("ERR subcommand not found")
    assert raw.call("RG.TRIGGER", "T1") == [b"['T1']"]


def test_unknown_trigger(raw):
    assert raw.call("RG.TRIGGER", "nope", "a") == Error("ERR subcommand not found")
    assert raw.call("RG.TRIGGERONKEY", "nope", "k") == Error("ERR subcommand not found")


def test_trigger_arity(raw):
    assert raw.call("RG.TRIGGER") == Error("ERR wrong number of arguments for 'rg.trigger' command")
    assert raw.call("RG.TRIGGERONKEY", "t") == Error("ERR wrong number of arguments for 'rg.triggeronkey' command")


def test_triggeronkey_key_position(raw):
    assert raw.call("COMMAND", "GETKEYS", "RG.TRIGGERONKEY", "t", "thekey", "x") == [b"thekey"]


def test_trigger_dump_args(r):
    rid = trigger(r)
    assert stats(r, rid)["args"] == {"trigger": "t", "inorder": 0}
    rid2 = trigger(r, trigger="t2", extra=", inorder=True, mode='async_local'")
    d = stats(r, rid2)
    assert d["args"] == {"trigger": "t2", "inorder": 1} and d["mode"] == "async_local"
    entry = [e for e in r.execute_command("RG.DUMPREGISTRATIONS") if e[1] == rid][0]
    assert entry[3] == "CommandReader"
    assert entry[7][0::2] == ["mode", "numTriggered", "numSuccess", "numFailures", "numAborted", "lastRunDurationMS",
                              "totalRunDurationMS", "avgRunDurationMS", "lastError", "args"]
    assert entry[7][-1] == ["trigger", "t", "inorder", 0]


# --- where non-sync triggers cannot block ---------------------------------------------------------


def test_non_sync_trigger_in_multi(raw, r):
    trigger(r)
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("RG.TRIGGER", "t", "a") == Status("QUEUED")
    assert raw.call("EXEC") == [Error(NON_SYNC)]


def test_non_sync_trigger_in_lua(raw, r):
    trigger(r)
    assert raw.call("EVAL", "return redis.pcall('RG.TRIGGER', 't')", 0) == Error(NON_SYNC)


def test_non_sync_trigger_from_execute(r):
    trigger(r)
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('RG.TRIGGER', 't')).run()")
    assert results == [] and len(errors) == 1
    assert errors[0].endswith(tb_end("gears.error: " + NON_SYNC)), errors


def test_sync_trigger_in_multi_lua_and_execute(raw, r):
    trigger(r, extra=", mode='sync'")
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("RG.TRIGGER", "t", "a") == Status("QUEUED")
    assert raw.call("EXEC") == [[b"['t', 'a']"]]
    assert raw.call("EVAL", "return redis.call('RG.TRIGGER', 't', 'b')", 0) == [b"['t', 'b']"]
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('RG.TRIGGER', 't', 'c')).run()") == [
        ["[\"['t', 'c']\"]"], []]


def test_sync_trigger_writes_are_atomic_in_multi(raw, r):
    trigger(r, ".foreach(lambda x: execute('INCR', 'n'))", extra=", mode='sync'")
    assert raw.call("MULTI") == Status("OK")
    raw.call("RG.TRIGGER", "t")
    raw.call("GET", "n")
    raw.call("RG.TRIGGER", "t")
    raw.call("GET", "n")
    assert raw.call("EXEC") == [[b"['t']"], b"1", [b"['t']"], b"2"]


# --- conflicts and kwarg errors -------------------------------------------------------------------


def test_trigger_taken_by_another_session(raw, r):
    trigger(r)
    refused(raw, "GB('CommandReader').register(trigger='t')", "trigger already registered")
    assert raw.call("RG.TRIGGER", "t") == [b"['t']"]


def test_trigger_twice_in_one_session(raw):
    refused(raw, "GB('CommandReader').register(trigger='t')\nGB('CommandReader').register(trigger='t')\n",
            "trigger already registered in this session")
    assert raw.call("RG.DUMPREGISTRATIONS") == []


def test_trigger_name_free_again_after_unregister(raw, r):
    rid = trigger(r, ".map(lambda x: 'old')")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    assert raw.call("RG.TRIGGER", "t") == Error("ERR subcommand not found")
    trigger(r, ".map(lambda x: 'new')")
    assert raw.call("RG.TRIGGER", "t") == [b"new"]


@pytest.mark.parametrize("kwargs, msg", [
    ("trigger=1", "trigger argument is not string"),
    ("inorder=1", "inorder argument is be boolean"),
    ("trigger='t', inorder='yes'", "inorder argument is be boolean"),
    ("keyprefix=1", "keyprefix argument is not string"),
    ("hook=1", "hook argument is not string"),
    ("hook=b'set'", "hook argument is not string"),
    ("trigger='t', hook='set'", "trigger argument can not be given with keyprefix or hook"),
    ("trigger='t', keyprefix='k'", "trigger argument can not be given with keyprefix or hook"),
    ("", "no trigger or hook argument was given"),
    ("keyprefix='k'", "no trigger or hook argument was given"),
    ("inorder=True", "no trigger or hook argument was given"),
    # order: trigger, inorder, keyprefix, hook, the combination, the absence
    ("trigger=1, inorder=1, keyprefix=1, hook=1", "trigger argument is not string"),
    ("inorder=1, keyprefix=1, hook=1", "inorder argument is be boolean"),
    ("keyprefix=1, hook=1", "keyprefix argument is not string"),
    ("trigger='t', hook=1", "hook argument is not string"),
    ("mode=1, trigger=1", "execution mode must be a string"),
    ("onRegistered=1, trigger=1", "OnRegistered argument must be a function"),
])
def test_command_reader_kwarg_errors(raw, kwargs, msg):
    assert_gears_error(raw, f"GB('CommandReader').register({kwargs})", msg)
    assert raw.call("RG.DUMPREGISTRATIONS") == []


def test_prefix_is_ignored_by_command_reader(raw, r):
    trigger(r, extra=", prefix=1")
    assert raw.call("RG.TRIGGER", "t") == [b"['t']"]


# --- ordering ---------------------------------------------------------------------------------------

GATED = (
    "import time\n"
    "def f(x):\n"
    "    execute('SET', 'started:' + x[1], '1')\n"
    "    if x[1] == 'wait':\n"
    "        n = 0\n"
    "        while not execute('EXISTS', 'gate') and n < 12000:\n"
    "            time.sleep(0.01)\n"
    "            n += 1\n"
    "    execute('RPUSH', 'order', x[1])\n"
    "    return x[1]\n"
    "GB('CommandReader').map(f).register(trigger='t'{extra})\n"
)


@pytest.mark.parametrize("mode", ["async", "async_local"])
def test_later_call_does_not_wait_for_an_earlier_one(server, r, mode):
    register_one(r, GATED.format(extra=f", mode={mode!r}"))
    first = server.raw()
    first.send("RG.TRIGGER", "t", "wait")
    wait_until(lambda: r.exists("started:wait"), what="the first call to run")
    second = server.raw()
    assert second.call("RG.TRIGGER", "t", "go") == [b"go"]
    assert r.lrange("order", 0, -1) == ["go"]
    r.set("gate", "1")
    assert first.read() == [b"wait"]
    assert r.lrange("order", 0, -1) == ["go", "wait"]


def test_inorder_calls_run_in_arrival_order(server, r):
    rid = register_one(r, GATED.format(extra=", mode='async_local', inorder=True"))
    assert stats(r, rid)["args"]["inorder"] == 1
    first = server.raw()
    first.send("RG.TRIGGER", "t", "wait")
    wait_until(lambda: r.exists("started:wait"), what="the first call to run")
    second = server.raw()
    second.send("RG.TRIGGER", "t", "go")
    wait_until(lambda: blocked_clients(r) == 2, what="both callers blocked")
    r.set("gate", "1")
    assert first.read() == [b"wait"]
    assert second.read() == [b"go"]
    assert r.lrange("order", 0, -1) == ["wait", "go"]


def test_many_concurrent_trigger_calls_each_get_their_reply(server, r):
    trigger(r, ".map(lambda x: x[1])", extra=", mode='async_local'")
    replies = {}
    errors = []

    def call(i):
        c = RawConnection(server.port)
        try:
            replies[i] = c.call("RG.TRIGGER", "t", str(i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert replies == {i: [str(i).encode()] for i in range(20)}


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async", "async_local"])
def test_hook_replaces_the_command(raw, r, mode):
    rid = hook(r, ".map(lambda x: repr(x))", extra=f", mode={mode!r}")
    assert raw.call("hset", "h", "f", "v") == b"['hset', 'h', 'f', 'v']"
    assert raw.call("EXISTS", "h") == 0  # the original command did not run
    assert stats(r, rid)["args"] == {"trigger": "hset", "inorder": 0}
    assert raw.call("HGET", "h", "f") is None  # other commands are untouched


def test_hook_command_matched_ignoring_case(raw, r):
    hook(r, ".map(lambda x: 'hooked')", command="HSet")
    assert raw.call("hset", "h", "f", "v") == b"hooked"
    assert raw.call("HSET", "h", "f", "v") == b"hooked"


def test_hook_reply_conversion(raw, r):
    hook(r, ".map(lambda x: 5)")
    assert raw.call("HSET", "h", "f", "v") == b"5"  # convertToStr turned it into a string
    hook(r, ".map(lambda x: 5)", command="hdel", extra=", mode='sync', convertToStr=False")
    assert raw.call("HDEL", "h", "f") == 5
    hook(r, ".map(lambda x: '+fine')", command="lpush")
    assert raw.call("LPUSH", "l", "a") == Status("fine")
    hook(r, ".map(lambda x: '-nope')", command="rpush")
    assert raw.call("RPUSH", "l", "a") == Error("nope")


@pytest.mark.parametrize("steps", [".flatmap(lambda x: ['a', 'b'])", ".filter(lambda x: False)"])
def test_hook_must_return_exactly_one_result(raw, r, steps):
    hook(r, steps)
    assert raw.call("HSET", "h", "f", "v") == Error("Command hook must return exactly one result")


def test_hook_error_reply(raw, r):
    hook(r, ".map(lambda x: flat_error('not allowed'))")
    assert raw.call("HSET", "h", "f", "v") == Error("not allowed")
    assert raw.call("EXISTS", "h") == 0


def test_call_next_runs_the_original_command(raw, r):
    hook(r, ".map(lambda x: call_next(*x[1:]))", extra=", mode='sync', convertToStr=False")
    assert raw.call("HSET", "h", "f", "v", "g", "w") == 2
    assert r.hgetall("h") == {"f": "v", "g": "w"}


def test_call_next_with_other_arguments(raw, r):
    hook(r, ".map(lambda x: call_next(x[1], 'changed', x[3]))", extra=", mode='async', convertToStr=False")
    assert raw.call("HSET", "h", "f", "v") == 1
    assert r.hgetall("h") == {"changed": "v"}


def test_call_next_error_raises(raw, r):
    hook(r, (
        ".map(lambda x: call_next('only-key'))"
    ), extra=", mode='sync'")
    res = raw.call("HSET", "h", "f", "v")
    assert type(res) is Error
    assert res.endswith(tb_end("gears.error: ERR wrong number of arguments for 'hset' command")), res


def test_hook_chain_newest_first(raw, r):
    hook(r, ".map(lambda x: 'first:' + str(call_next(*x[1:])))")
    hook(r, ".map(lambda x: 'second:' + str(call_next(*x[1:])))")
    assert raw.call("HSET", "h", "f", "v") == b"second:first:1"
    assert r.hgetall("h") == {"f": "v"}


def test_non_sync_hook_can_be_last_of_a_chain(raw, r):
    hook(r, ".map(lambda x: 'sync:' + str(call_next(*x[1:])))")
    hook(r, ".map(lambda x: 'async:' + str(call_next(*x[1:])))", extra=", mode='async'")
    assert raw.call("HSET", "h", "f", "v") == b"async:sync:1"


def test_unregistering_a_hook_releases_the_command(raw, r):
    rid = hook(r, ".map(lambda x: 'hooked')")
    assert raw.call("HSET", "h", "f", "v") == b"hooked"
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    assert raw.call("HSET", "h", "f", "v") == 1


def test_unregistering_the_newest_hook_of_a_chain(raw, r):
    hook(r, ".map(lambda x: 'old:' + str(call_next(*x[1:])))")
    new = hook(r, ".map(lambda x: 'new:' + str(call_next(*x[1:])))")
    assert raw.call("HSET", "h", "f", "v") == b"new:old:1"
    assert r.execute_command("RG.UNREGISTER", new) == "OK"
    assert raw.call("HSET", "h", "g", "v") == b"old:1"


def test_keyprefix(raw, r):
    rid = hook(r, ".map(lambda x: 'hooked')", command="set", extra=", mode='sync', keyprefix='hk:'")
    assert raw.call("SET", "hk:1", "v") == b"hooked"
    assert raw.call("SET", "other", "v") == Status("OK")
    assert raw.call("SET", "xhk:1", "v") == Status("OK")
    assert raw.call("EXISTS", "hk:1") == 0
    assert stats(r, rid)["args"] == {"trigger": "set", "inorder": 0}


def test_keyprefix_looks_at_every_key(raw, r):
    hook(r, ".map(lambda x: 'hooked')", command="mset", extra=", mode='sync', keyprefix='hk:'")
    assert raw.call("MSET", "a", "1", "b", "2") == Status("OK")
    assert raw.call("MSET", "a", "1", "hk:b", "2") == b"hooked"


def test_sync_hook_applies_to_lua_and_execute(raw, r):
    hook(r, ".map(lambda x: 'hooked')")
    assert raw.call("EVAL", "return redis.call('hset', 'h', 'f', 'v')", 0) == b"hooked"
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('HSET', 'h', 'f', 'v')).run()") == [["hooked"], []]
    assert raw.call("EXISTS", "h") == 0


def test_sync_hook_in_multi(raw, r):
    hook(r, ".map(lambda x: 'hooked')")
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("HSET", "h", "f", "v") == Status("QUEUED")
    assert raw.call("EXEC") == [b"hooked"]


def test_non_sync_hook_where_blocking_is_impossible(raw, r):
    hook(r, ".map(lambda x: 'hooked')", extra=", mode='async'")
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("HSET", "h", "f", "v") == Status("QUEUED")
    assert raw.call("EXEC") == [Error(NON_SYNC)]
    assert raw.call("EVAL", "return redis.pcall('hset', 'h', 'f', 'v')", 0) == Error(NON_SYNC)
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('HSET', 'h', 'f', 'v')).run()")
    assert results == [] and len(errors) == 1
    assert errors[0].endswith(tb_end("gears.error: " + NON_SYNC)), errors
    assert raw.call("EXISTS", "h") == 0


def test_hook_functions_scope(raw, r):
    hook(r, ".map(lambda x: get_command())")
    res = raw.call("HSET", "h", "f", "v")
    assert type(res) is Error and res.endswith(tb_end("gears.error: Can not get command ctx")), res
    hook(r, ".map(lambda x: override_reply('x'))", command="hdel")
    res = raw.call("HDEL", "h", "f")
    assert type(res) is Error and res.endswith(tb_end("gears.error: Can not get command ctx")), res
    trigger(r, ".map(lambda x: call_next())")
    res = raw.call("RG.TRIGGER", "t")
    assert type(res) is Error and res.endswith(tb_end("gears.error: Can not get CommandHook ctx")), res
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda x: call_next('a')).run()")
    assert results == [] and errors[0].endswith(tb_end("gears.error: Can not get CommandHook ctx")), errors
    assert_gears_error(raw, "call_next('a')", "Can not get CommandHook ctx")


@pytest.mark.parametrize("kwargs, msg", [
    ("hook='nosuchcommand'", "Can not override an unexisting command"),
    ("hook='multi'", "Can not override a command which are not allowed inside a script"),
    ("hook='exec'", "Can not override a command which are not allowed inside a script"),
    ("hook='eval'", "Can not override a command which are not allowed inside a script"),
    ("hook='xread', keyprefix='x'", "Can not override a command with moveable keys by key prefix"),
])
def test_hook_registration_errors(raw, kwargs, msg):
    refused(raw, f"GB('CommandReader').register({kwargs}, mode='sync')", msg)


def test_hook_on_movable_keys_command_without_keyprefix(raw, r):
    hook(r, ".map(lambda x: 'hooked')", command="xread")
    assert raw.call("XREAD", "STREAMS", "s", "0") == b"hooked"


def test_no_hook_on_top_of_a_non_sync_hook(raw, r):
    hook(r, ".map(lambda x: 'async')", extra=", mode='async'")
    refused(raw, "GB('CommandReader').map(lambda x: 'sync').register(hook='hset', mode='sync')",
            "Can not override a none sync registration")
    refused(raw, "GB('CommandReader').map(lambda x: 'sync').register(hook='HSET', mode='async_local')",
            "Can not override a none sync registration")
    assert raw.call("HSET", "h", "f", "v") == b"async"


def test_no_second_hook_on_a_non_sync_hook_of_the_same_script(raw):
    res = raw.call("RG.PYEXECUTE", (
        "GB('CommandReader').register(hook='hset', mode='async')\n"
        "GB('CommandReader').register(hook='hset', mode='sync')\n"
    ))
    assert type(res) is Error
    assert res.endswith(tb_end("gears.error: Can not override a none sync registration which already created on this session")), res
    assert raw.call("RG.DUMPREGISTRATIONS") == []
    assert raw.call("HSET", "h", "f", "v") == 1


def test_two_sync_hooks_in_one_script(raw, r):
    assert pyexecute(r, (
        "GB('CommandReader').map(lambda x: 'a:' + str(call_next(*x[1:]))).register(hook='hset', mode='sync')\n"
        "GB('CommandReader').map(lambda x: 'b:' + str(call_next(*x[1:]))).register(hook='hset', mode='sync')\n"
    )) == "OK"
    assert raw.call("HSET", "h", "f", "v") == b"b:a:1"
    assert len(dump_registrations(r)) == 2
