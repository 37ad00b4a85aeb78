"""KeysReader registrations (docs/python-api.md#register, docs/commands.md#rgdumpregistrations):
register() and its common keyword arguments, the execution modes, keyspace events (keymiss included),
the prefix rule, eventTypes / keyTypes / readValue, commands= with get_command() and override_reply(),
a registration that triggers itself, and which actions use up registration and execution ids.

The helpers at the top are shared by the other test_registrations_* files.
Every wait is a polling loop with a generous deadline; nothing here measures speed.
"""

import pytest

from conftest import (
    SHARD0,
    Error,
    Status,
    assert_gears_error,
    dump_executions,
    exec_id,
    pyexecute,
    tb_end,
    wait_until,
)

# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

ENTRY_NAMES = ["id", "reader", "desc", "RegistrationData", "PD", "ExecutionThreadPool"]


def pairs(flat):
    assert isinstance(flat, list) and len(flat) % 2 == 0, flat
    return dict(zip(flat[0::2], flat[1::2]))


def dump_registrations(client):
    """RG.DUMPREGISTRATIONS as a list of dicts: id, reader, desc, data (RegistrationData as a dict, its
    'args' also as a dict), PD, pool. Checks the fixed 12-element layout of every entry on the way."""
    out = []
    for e in client.execute_command("RG.DUMPREGISTRATIONS"):
        assert isinstance(e, list) and len(e) == 12, e
        assert e[0::2] == ENTRY_NAMES, e
        data = pairs(e[7])
        data["args"] = pairs(data["args"])
        out.append({"id": e[1], "reader": e[3], "desc": e[5], "data": data, "PD": e[9], "pool": e[11]})
    return out


def registration(client, rid):
    for reg in dump_registrations(client):
        if reg["id"] == rid:
            return reg
    return None


def only_registration(client):
    regs = dump_registrations(client)
    assert len(regs) == 1, regs
    return regs[0]


def stats(client, rid):
    reg = registration(client, rid)
    assert reg is not None, f"registration {rid} is not listed"
    return reg["data"]


def wait_stats(client, rid, **expected):
    """Waits until the registration's counters have the given values (e.g. numSuccess=3)."""
    def check():
        d = stats(client, rid)
        return all(d[k] == v for k, v in expected.items()) and d
    return wait_until(check, what=f"registration {rid} to reach {expected}")


def register(client, script, *opts):
    """Runs a registering script that must be applied: the reply is OK. Returns the ids registered by it."""
    before = {reg["id"] for reg in dump_registrations(client)}
    assert pyexecute(client, script, *opts) == "OK"
    return [reg["id"] for reg in dump_registrations(client) if reg["id"] not in before]


def register_one(client, script, *opts):
    ids = register(client, script, *opts)
    assert len(ids) == 1, ids
    return ids[0]


def refusal(raw, script, msg, *opts):
    """A registration that must be refused with `msg`. register() raises it as gears.error when it can tell
    at once (the script fails with the formatted error); a refusal found while applying comes as an array
    of error replies, one per shard, each naming the shard and the reason. Either way nothing is registered.
    Returns the reply."""
    before = raw.call("RG.DUMPREGISTRATIONS")
    res = raw.call("RG.PYEXECUTE", script, *opts)
    if isinstance(res, Error):
        assert res.endswith(tb_end("gears.error: " + msg)), res
    else:
        assert isinstance(res, list) and len(res) == 1 and type(res[0]) is Error, res
        assert msg in res[0] and SHARD0 in res[0], res
    after = raw.call("RG.DUMPREGISTRATIONS")
    assert [e[1] for e in after] == [e[1] for e in before], "a refused registration is listed"
    return res


def registered_executions(client):
    return [eid for eid, _st, reg in dump_executions(client) if reg == 1]


def lrange(client, key):
    return client.lrange(key, 0, -1)


# Record every event of keys under `k*` as its repr, inline (sync), in the list `log`.
LOG_SYNC = "GB().foreach(lambda r: execute('RPUSH', 'log', repr(r))).register(prefix='k*', mode='sync'{extra})"


def log_records(r, extra=""):
    return register_one(r, LOG_SYNC.format(extra=extra))


# --------------------------------------------------------------------------------------------
# register(): reply, return value, common kwargs
# --------------------------------------------------------------------------------------------


def test_register_replies_ok_and_returns_the_registration_id(r):
    script = "rid = GB().register(prefix='k*')\nexecute('SET', 'rid', rid)\nexecute('SET', 'rtype', type(rid).__name__)\n"
    assert pyexecute(r, script) == "OK"
    assert r.get("rtype") == "str"
    assert [reg["id"] for reg in dump_registrations(r)] == [r.get("rid")]
    assert r.get("rid") == exec_id(1)


def test_registration_fires_and_keeps_its_executions_listed(r):
    rid = register_one(r, "GB().map(lambda r: r['key']).register(prefix='k*')")
    r.set("k1", "v")
    wait_stats(r, rid, numTriggered=1, numSuccess=1)
    eids = registered_executions(r)
    assert len(eids) == 1
    assert r.execute_command("RG.GETRESULTS", eids[0]) == [["k1"], []]


def test_registration_results_keep_types_with_convert_to_str_false(r):
    rid = register_one(r, "GB().map(lambda r: len(r['value'])).register(prefix='k*', convertToStr=False)")
    r.set("k1", "abc")
    wait_stats(r, rid, numSuccess=1)
    assert r.execute_command("RG.GETRESULTS", registered_executions(r)[0]) == [[3], []]


def test_script_that_raises_after_register_registers_nothing(raw):
    res = raw.call("RG.PYEXECUTE", "GB().register(prefix='k*')\nraise Exception('no')\n")
    assert type(res) is Error and res.endswith(tb_end("Exception: no")), res
    assert raw.call("RG.DUMPREGISTRATIONS") == []
    assert raw.call("RG.PYDUMPSESSIONS") == []


def test_regex_is_an_alias_of_prefix_and_logs_a_deprecation(server, r):
    rid = register_one(r, "GB().register(regex='k*')")
    assert stats(r, rid)["args"]["regex"] == "k*"
    server.wait_log("Using regex argument with register is deprecated and missleading, use prefix instead.")


@pytest.mark.parametrize("kwargs, msg", [
    ("mode='x'", "unknown execution mode"),
    ("mode=''", "unknown execution mode"),
    ("mode=1", "execution mode must be a string"),
    ("onRegistered=1", "OnRegistered argument must be a function"),
    ("onRegistered='f'", "OnRegistered argument must be a function"),
    ("prefix=1", "regex argument must be a string"),
    ("prefix=None", "regex argument must be a string"),
    ("regex=b'k*'", "regex argument must be a string"),
    # checked in this order: mode, onRegistered, prefix, then the reader's own kwargs
    ("mode=1, onRegistered=1, prefix=1", "execution mode must be a string"),
    ("onRegistered=1, prefix=1", "OnRegistered argument must be a function"),
    ("prefix=1, eventTypes=1, readValue=1", "regex argument must be a string"),
])
def test_register_common_kwarg_errors(raw, kwargs, msg):
    assert_gears_error(raw, f"GB().register({kwargs})", msg)
    assert raw.call("RG.DUMPREGISTRATIONS") == []


@pytest.mark.parametrize("reader", ["PythonReader", "ShardsIDReader", "KeysOnlyReader"])
def test_readers_that_cannot_register(raw, reader):
    assert_gears_error(raw, f"GB({reader!r}).register()", "given reader does not exists or does not support register")


def test_a_builder_registered_twice_gives_two_registrations(r):
    ids = register(r, "b = GB().foreach(lambda r: execute('INCR', 'n:' + r['key']))\nb.register(prefix='k1')\nb.register(prefix='k2')\n")
    assert ids == [exec_id(1), exec_id(2)]
    assert [stats(r, i)["args"]["regex"] for i in ids] == ["k1", "k2"]
    r.set("k1", "v")
    r.set("k2", "v")
    wait_until(lambda: r.get("n:k1") == "1" and r.get("n:k2") == "1")


def test_register_from_a_step_applies_at_once_and_joins_the_session(r):
    script = (
        "def reg(x):\n"
        "    return GB().foreach(lambda r: execute('INCR', 'inner')).register(prefix='in:*')\n"
        "GB('ShardsIDReader').map(reg).run()\n"
    )
    results, errors = pyexecute(r, script, "ID", "stepsession")
    assert errors == []
    assert len(results) == 1
    reg = only_registration(r)
    assert reg["id"] == results[0]
    assert "'sessionName':'stepsession'" in reg["PD"], reg["PD"]
    r.set("in:1", "x")
    wait_until(lambda: r.get("inner") == "1")


def test_register_from_a_registration_execution_joins_its_session(r, raw):
    rid = register_one(r, (
        "def reg(x):\n"
        "    return GB().foreach(lambda r: execute('INCR', 'inner')).register(prefix='in:*')\n"
        "GB('CommandReader').map(reg).register(trigger='reg')\n"
    ), "ID", "s1")
    reply = raw.call("RG.TRIGGER", "reg")
    assert isinstance(reply, list) and len(reply) == 1, reply
    inner = reply[0].decode()
    regs = dump_registrations(r)
    assert [reg["id"] for reg in regs] == [rid, inner]
    assert regs[1]["PD"].startswith("{'sessionName':'s1', 'sessionDescription':'null', 'refCount': 2, "), regs[1]["PD"]
    assert regs[1]["PD"].endswith(f"'registrationsList':['{rid}','{inner}'], 'depsList':[]}}"), regs[1]["PD"]
    r.set("in:1", "x")
    wait_until(lambda: r.get("inner") == "1")


# --------------------------------------------------------------------------------------------
# Execution modes
# --------------------------------------------------------------------------------------------

COUNT_SCRIPT = "GB().foreach(lambda r: execute('INCR', 'count:' + r['key'])).register(prefix='k*'{extra})"


@pytest.mark.parametrize("mode", ["async", "async_local", "sync"])
def test_mode_is_listed_and_every_event_runs_once(r, mode):
    rid = register_one(r, COUNT_SCRIPT.format(extra=f", mode={mode!r}"))
    assert stats(r, rid)["mode"] == mode
    for i in range(5):
        r.set(f"k{i}", "v")
    wait_stats(r, rid, numTriggered=5, numSuccess=5)
    assert [r.get(f"count:k{i}") for i in range(5)] == ["1"] * 5


def test_default_mode_is_async(r):
    rid = register_one(r, COUNT_SCRIPT.format(extra=""))
    assert stats(r, rid)["mode"] == "async"


def test_sync_runs_before_the_command_replies(r):
    register_one(r, COUNT_SCRIPT.format(extra=", mode='sync'"))
    for i in range(20):
        r.set("k1", str(i))
        # no wait: the execution ran inside SET
        assert r.get("count:k1") == str(i + 1)


def test_sync_is_atomic_with_the_command_inside_multi(r):
    register_one(r, COUNT_SCRIPT.format(extra=", mode='sync'"))
    p = r.pipeline(transaction=True)
    p.get("count:k1")
    p.set("k1", "v")
    p.get("count:k1")
    p.set("k1", "w")
    p.get("count:k1")
    assert p.execute() == [None, True, "1", True, "2"]


def test_sync_runs_inside_lua(r):
    register_one(r, COUNT_SCRIPT.format(extra=", mode='sync'"))
    assert r.eval("redis.call('SET', 'k1', 'v'); return redis.call('GET', 'count:k1')", 0) == "1"


def test_sync_writes_fire_no_keys_registration(r):
    # As in RedisGears: Redis does not re-enter the keyspace subscriber while it runs, so the write a
    # sync execution makes reaches no KeysReader registration, sync or async (docs/python-api.md).
    register(r, (
        "GB().foreach(lambda r: execute('SET', 'b:' + r['key'], '1')).register(prefix='a:*', mode='sync')\n"
        "GB().foreach(lambda r: execute('SET', 'c:' + r['key'], '1')).register(prefix='b:*', mode='sync')\n"
    ))
    r.set("a:1", "v")
    assert r.get("b:a:1") == "1"
    assert r.get("c:b:a:1") is None
    r.set("b:2", "v")  # a client's write to b:* still fires the second one
    assert r.get("c:b:2") == "1"


# --------------------------------------------------------------------------------------------
# Events and record shapes
# --------------------------------------------------------------------------------------------


def test_records_of_keyspace_events(r):
    log_records(r)
    r.set("k1", "v")
    r.append("k1", "x")
    r.incr("kn")
    r.hset("kh", "f", "v")
    r.lpush("kl", "a")
    r.sadd("ks", "m")
    r.zadd("kz", {"m": 1})
    r.xadd("kx", {"f": "v"}, id="1-0")
    r.expire("k1", 1000)
    r.persist("k1")
    r.rename("k1", "k2")
    r.delete("k2")
    assert r.get("kmiss") is None
    assert lrange(r, "log") == [
        "{'key': 'k1', 'value': 'v', 'type': 'string', 'event': 'set'}",
        "{'key': 'k1', 'value': 'vx', 'type': 'string', 'event': 'append'}",
        "{'key': 'kn', 'value': '1', 'type': 'string', 'event': 'incrby'}",
        "{'key': 'kh', 'value': {'f': 'v'}, 'type': 'hash', 'event': 'hset'}",
        "{'key': 'kl', 'value': ['a'], 'type': 'list', 'event': 'lpush'}",
        "{'key': 'ks', 'value': None, 'type': 'set', 'event': 'sadd'}",
        "{'key': 'kz', 'value': None, 'type': 'zset', 'event': 'zadd'}",
        "{'key': 'kx', 'value': None, 'type': 'unknown', 'event': 'xadd'}",
        "{'key': 'k1', 'value': 'vx', 'type': 'string', 'event': 'expire'}",
        "{'key': 'k1', 'value': 'vx', 'type': 'string', 'event': 'persist'}",
        "{'key': 'k1', 'value': None, 'type': 'empty', 'event': 'rename_from'}",
        "{'key': 'k2', 'value': 'vx', 'type': 'string', 'event': 'rename_to'}",
        "{'key': 'k2', 'value': None, 'type': 'empty', 'event': 'del'}",
        "{'key': 'kmiss', 'value': None, 'type': 'empty', 'event': 'keymiss'}",
    ]


def test_reading_the_value_of_a_deleted_key_causes_no_keymiss(r):
    # The registration reads the value of every event's key; for `del` the key is gone, and that read
    # must not raise a keymiss event of its own (which would fire the registration again).
    rid = log_records(r)
    r.set("k1", "v")
    r.delete("k1")
    assert lrange(r, "log") == ["{'key': 'k1', 'value': 'v', 'type': 'string', 'event': 'set'}",
                                "{'key': 'k1', 'value': None, 'type': 'empty', 'event': 'del'}"]
    assert stats(r, rid)["numTriggered"] == 2


def test_expired_event(r):
    log_records(r)
    r.set("k1", "v", px=1)
    wait_until(lambda: "{'key': 'k1', 'value': None, 'type': 'empty', 'event': 'expired'}" in lrange(r, "log"),
               what="the expired event")


def test_record_without_value(r):
    log_records(r, ", readValue=False")
    r.set("k1", "v")
    r.hset("kh", "f", "v")
    r.delete("k1")
    assert lrange(r, "log") == [
        "{'key': 'k1', 'event': 'set'}",
        "{'key': 'kh', 'event': 'hset'}",
        "{'key': 'k1', 'event': 'del'}",
    ]


def test_async_records_are_the_same(r):
    rid = register_one(r, "GB().register(prefix='k1')")
    r.hset("k1", mapping={"a": "1", "b": "2"})
    wait_stats(r, rid, numSuccess=1)
    assert r.execute_command("RG.GETRESULTS", registered_executions(r)[0]) == [
        ["{'key': 'k1', 'value': {'a': '1', 'b': '2'}, 'type': 'hash', 'event': 'hset'}"], []]


def test_values_that_are_not_utf8_are_bytearrays(r, raw):
    log_records(r, "")
    raw.call("SET", "k1", b"\xff\x00a")
    assert lrange(r, "log") == ["{'key': 'k1', 'value': bytearray(b'\\xff\\x00a'), 'type': 'string', 'event': 'set'}"]


def test_events_in_another_database_fire_and_run_there(server, r):
    register_one(r, COUNT_SCRIPT.format(extra=", mode='sync'"))
    c = server.client(db=3)
    c.set("k1", "v")
    assert c.get("count:k1") == "1"
    assert r.get("count:k1") is None


# --------------------------------------------------------------------------------------------
# Prefix rule
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix, hits, misses", [
    ("a*", ["a", "ab", "a*x", "a?"], ["ba", "b", "A"]),
    ("abc", ["abc"], ["abcd", "ab", "xabc"]),
    ("a?", ["a?"], ["ab", "a"]),
    ("a*b*", ["a*b", "a*bc"], ["axbc", "ab", "a"]),
    ("[ab]*", ["[ab]", "[ab]x"], ["a", "b", "ax"]),
    ("*", ["a", "zz", "*"], []),
])
def test_prefix_rule(r, prefix, hits, misses):
    register_one(r, f"GB().foreach(lambda r: execute('RPUSH', '_hits', r['key'])).register(prefix={prefix!r}, mode='sync', eventTypes=['set'])")
    for k in misses + hits:
        r.set(k, "v")
    assert lrange(r, "_hits") == hits


# --------------------------------------------------------------------------------------------
# eventTypes, keyTypes, readValue
# --------------------------------------------------------------------------------------------

HITS = "GB().foreach(lambda r: execute('RPUSH', 'hits', r['event'] + ':' + r['key'])).register(prefix='k*', mode='sync', {kw})"


def test_event_types_match_ignoring_case(r):
    rid = register_one(r, HITS.format(kw="eventTypes=['SET', 'Del']"))
    r.set("k1", "v")
    r.hset("kh", "f", "v")
    r.append("k1", "x")
    r.delete("k1")
    assert lrange(r, "hits") == ["set:k1", "del:k1"]
    assert stats(r, rid)["args"]["eventTypes"] == ["SET", "Del"]


def test_event_types_keymiss(r):
    register_one(r, HITS.format(kw="eventTypes=('keymiss',)"))
    r.set("k1", "v")
    r.get("k1")
    r.get("k2")
    r.hget("k3", "f")
    assert lrange(r, "hits") == ["keymiss:k2", "keymiss:k3"]


@pytest.mark.parametrize("key_types, expected", [
    ("['hash']", ["hset:kh"]),
    ("['empty']", ["del:ks", "del:kh"]),
    ("['string', 'list']", ["set:ks", "lpush:kl"]),
    ("['stream']", ["xadd:kx"]),
    ("['set', 'zset']", ["sadd:kset", "zadd:kz"]),
])
def test_key_types(r, key_types, expected):
    register_one(r, HITS.format(kw=f"keyTypes={key_types}"))
    r.set("ks", "v")
    r.hset("kh", "f", "v")
    r.lpush("kl", "a")
    r.xadd("kx", {"f": "v"})
    r.sadd("kset", "m")
    r.zadd("kz", {"m": 1})
    r.delete("ks")
    r.delete("kh")
    assert lrange(r, "hits") == expected


def test_event_and_key_types_together(r):
    rid = register_one(r, HITS.format(kw="eventTypes=['hset', 'del'], keyTypes=['hash']"))
    r.hset("kh", "f", "v")
    r.hdel("kh", "f")
    r.hset("kh", "f", "v")
    r.delete("kh")
    assert lrange(r, "hits") == ["hset:kh", "hset:kh"]
    args = stats(r, rid)["args"]
    assert args["eventTypes"] == ["hset", "del"] and args["keyTypes"] == ["hash"]


@pytest.mark.parametrize("kwargs, msg", [
    ("eventTypes=1", "given eventTypes is not iterable"),
    ("eventTypes=['set', 1]", "given event type is not string"),
    ("keyTypes=1", "given keyTypes is not iterable"),
    ("keyTypes=[b'hash']", "given key type is not string"),
    ("keyTypes=['hash', 'nosuch']", "unknown key type"),
    ("keyTypes=['Hash']", "unknown key type"),
    ("readValue=1", "readValue is not boolean"),
    ("readValue='True'", "readValue is not boolean"),
    ("commands=1", "given commands is not iterable"),
    ("commands=['set', 1]", "given command type is not string"),
])
def test_keysreader_kwarg_errors(raw, kwargs, msg):
    assert_gears_error(raw, f"GB().register(prefix='k*', {kwargs})", msg)
    assert raw.call("RG.DUMPREGISTRATIONS") == []


# --------------------------------------------------------------------------------------------
# commands=, get_command(), override_reply()
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_commands_override_reply_with_error(r, raw, mode):
    rid = register_one(r, f"GB().foreach(lambda r: override_reply('-denied')).register(prefix='k*', commands=['set'], mode={mode!r})")
    assert raw.call("SET", "k1", "v") == Error("denied")
    assert r.get("k1") == "v"  # the command itself ran
    # Events of other commands do not fire the registration.
    assert raw.call("HSET", "kh", "f", "v") == 1
    assert raw.call("APPEND", "k1", "w") == 2
    assert stats(r, rid)["numTriggered"] == 1
    assert stats(r, rid)["args"]["hookCommands"] == ["set"]


@pytest.mark.parametrize("value, expected", [
    ("'+fine'", Status("fine")),
    ("'plain'", b"plain"),
    ("5", 5),
    ("['a', 1]", [b"a", 1]),
    ("None", b"PY RECORD"),
])
def test_override_reply_conversion(r, raw, value, expected):
    register_one(r, f"GB().foreach(lambda r: override_reply({value})).register(prefix='k*', commands=['set'])")
    assert raw.call("SET", "k1", "v") == expected


def test_get_command_gives_the_linked_command(r, raw):
    register_one(r, "GB().foreach(lambda r: override_reply(get_command())).register(prefix='k*', commands=['SET'])")
    assert raw.call("set", "k1", "v", "PX", "100000") == [b"set", b"k1", b"v", b"PX", b"100000"]


def test_async_linked_client_is_blocked_until_the_execution_ends(r, raw):
    register_one(r, (
        "import time\n"
        "def slow(r):\n"
        "    time.sleep(0.3)\n"
        "    execute('INCR', 'seen')\n"
        "GB().foreach(slow).register(prefix='k*', commands=['set'])\n"
    ))
    for i in range(3):
        assert raw.call("SET", "k1", "v") == Status("OK")
        # The reply came only after the execution ended, so its write is there already.
        assert r.get("seen") == str(i + 1)


def test_commands_matched_ignoring_case(r, raw):
    rid = register_one(r, "GB().foreach(lambda r: override_reply('+hooked')).register(prefix='k*', commands=['HSet', 'set'])")
    assert raw.call("hset", "k1", "f", "v") == Status("hooked")
    assert raw.call("SET", "k2", "v") == Status("hooked")
    assert stats(r, rid)["numTriggered"] == 2


def test_override_reply_twice(r, raw):
    rid = register_one(r, (
        "def f(r):\n"
        "    override_reply('first')\n"
        "    override_reply('second')\n"
        "GB().foreach(f).register(prefix='k*', commands=['set'])\n"
    ))
    assert raw.call("SET", "k1", "v") == b"first"
    d = wait_stats(r, rid, numFailures=1)
    assert d["lastError"].endswith(tb_end("gears.error: Can only override reply once")), d["lastError"]


def test_override_reply_needs_one_argument(r, raw):
    rid = register_one(r, "GB().foreach(lambda r: override_reply()).register(prefix='k*', commands=['set'])")
    assert raw.call("SET", "k1", "v") == Status("OK")
    d = wait_stats(r, rid, numFailures=1)
    assert d["lastError"].endswith(tb_end("gears.error: Override reply must get a single argument")), d["lastError"]


def test_commands_in_multi_and_lua_are_not_blocked_or_overridden(r, raw):
    rid = register_one(r, "GB().foreach(lambda r: override_reply('-denied')).register(prefix='k*', commands=['set'])")
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("SET", "k1", "v") == Status("QUEUED")
    assert raw.call("EXEC") == [Status("OK")]
    assert raw.call("EVAL", "return redis.call('SET', 'k2', 'v')", 0) == Status("OK")
    wait_stats(r, rid, numTriggered=2)


def test_sync_commands_registration_overrides_inside_multi_and_lua(r, raw):
    register_one(r, "GB().foreach(lambda r: override_reply('-denied')).register(prefix='k*', commands=['set'], mode='sync')")
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("SET", "k1", "v") == Status("QUEUED")
    assert raw.call("GET", "k1") == Status("QUEUED")
    assert raw.call("EXEC") == [Error("denied"), b"v"]
    # (Lua's error conversion may put an ERR code in front)
    res = raw.call("EVAL", "return redis.pcall('SET', 'k2', 'v')", 0)
    assert type(res) is Error and res in ("denied", "ERR denied"), res


def test_execute_is_not_linked(r):
    register_one(r, "GB().foreach(lambda r: override_reply('-denied')).register(prefix='k*', commands=['set'], mode='sync')")
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('SET', 'k1', 'v')).run()") == [["OK"], []]
    assert r.get("k1") == "v"


@pytest.mark.parametrize("call", ["get_command()", "override_reply('x')"])
def test_command_ctx_functions_outside_a_linked_execution(r, call):
    results, errors = pyexecute(r, f"GB('ShardsIDReader').map(lambda x: {call}).run()")
    assert results == [] and len(errors) == 1
    assert errors[0].endswith(tb_end("gears.error: Can not get command ctx")), errors
    # A registration without commands= has no linked command either.
    rid = register_one(r, f"GB().map(lambda x: {call}).register(prefix='k*', mode='sync')")
    r.set("k1", "v")
    d = stats(r, rid)
    assert d["numFailures"] == 1
    assert d["lastError"].endswith(tb_end("gears.error: Can not get command ctx")), d["lastError"]


def test_command_ctx_functions_in_the_script_body(raw):
    assert_gears_error(raw, "get_command()", "Can not get command ctx")
    assert_gears_error(raw, "override_reply('x')", "Can not get command ctx")


@pytest.mark.parametrize("commands, msg", [
    ("['multi']", "Can not hook a command which are not allowed inside a script"),
    ("['exec']", "Can not hook a command which are not allowed inside a script"),
    ("['set', 'eval']", "Can not hook a command which are not allowed inside a script"),
    ("['xread']", "Can not hook a command with moveable keys by key prefix"),
    ("['nosuchcommand']", "bad reply"),
])
def test_commands_refused(raw, commands, msg):
    res = raw.call("RG.PYEXECUTE", f"GB().register(prefix='k*', commands={commands})")
    if type(res) is Error:
        text = str(res)
    else:
        assert isinstance(res, list) and len(res) == 1 and type(res[0]) is Error, res
        text = str(res[0])
    assert msg in text, text
    assert raw.call("RG.DUMPREGISTRATIONS") == []


# --------------------------------------------------------------------------------------------
# A registration that triggers itself
# --------------------------------------------------------------------------------------------

SELF = (
    "def f(r):\n"
    "    if int(r['value']) < 10:\n"
    "        execute('INCR', 'self')\n"
    "GB().foreach(f).register(prefix='self', mode={mode!r})\n"
)


def test_sync_registration_triggers_itself_once_per_client_write(server, r):
    rid = register_one(r, SELF.format(mode="sync"))
    r.set("self", "0")
    assert r.get("self") == "1"
    r.set("self", "5")
    assert r.get("self") == "6"
    d = stats(r, rid)
    assert (d["numTriggered"], d["numSuccess"], d["numFailures"]) == (2, 2, 0)
    assert r.ping()


@pytest.mark.parametrize("mode", ["async", "async_local"])
def test_async_registration_triggers_itself(server, r, mode):
    rid = register_one(r, SELF.format(mode=mode))
    r.set("self", "0")
    wait_stats(r, rid, numTriggered=11, numSuccess=11)
    assert r.get("self") == "10"
    # One at a time in event order: each execution reads the value its predecessor wrote.
    results = [r.execute_command("RG.GETRESULTS", e) for e in registered_executions(r)]
    assert results == [[[f"{{'key': 'self', 'value': '{n}', 'type': 'string', 'event': '{'set' if n == 0 else 'incrby'}'}}"], []]
                       for n in range(11)]


def test_unbounded_self_trigger_keeps_the_server_serving(server, r):
    # An async registration that always writes its own key: it never ends by itself, but the server
    # keeps answering, and unregistering stops it.
    rid = register_one(r, "GB().foreach(lambda r: execute('INCR', 'loop')).register(prefix='loop')")
    r.set("loop", "0")
    wait_until(lambda: int(r.get("loop")) > 50, what="the loop to go round")
    assert r.ping()
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: 'alive').run()") == [["alive"], []]
    assert r.execute_command("RG.UNREGISTER", rid, "abortpending") == "OK"
    assert dump_registrations(r) == []


# --------------------------------------------------------------------------------------------
# Pending events bound (MaxPendingEventsPerRegistration)
# --------------------------------------------------------------------------------------------


def test_max_pending_events_config_default_and_set(r):
    assert r.execute_command("RG.CONFIGGET", "MaxPendingEventsPerRegistration") == [10000]
    assert r.execute_command("RG.CONFIGSET", "MaxPendingEventsPerRegistration", "2") == ["OK"]
    assert r.execute_command("RG.CONFIGGET", "MaxPendingEventsPerRegistration") == [2]


SLOW_COUNT = (
    "import time\n"
    "def f(r):\n"
    "    time.sleep(0.05)\n"
    "    execute('HINCRBY', 'processed', r['key'], 1)\n"
    "GB().foreach(f).register(prefix='k*')\n"
)


def check_each_event_once(r, rid, n):
    wait_stats(r, rid, numTriggered=n, numSuccess=n)
    assert r.hgetall("processed") == {f"k{i}": "1" for i in range(n)}


@pytest.mark.module_args("MaxPendingEventsPerRegistration", "2")
def test_events_beyond_the_pending_bound_are_processed_once(server, r):
    rid = register_one(r, SLOW_COUNT)
    for i in range(30):
        r.set(f"k{i}", "v")
    check_each_event_once(r, rid, 30)
    assert r.ping()


def test_pending_bound_set_at_runtime(server, r):
    assert r.execute_command("RG.CONFIGSET", "MaxPendingEventsPerRegistration", "2") == ["OK"]
    rid = register_one(r, SLOW_COUNT)
    p = r.pipeline(transaction=False)
    for i in range(30):
        p.set(f"k{i}", "v")
    assert p.execute() == [True] * 30
    check_each_event_once(r, rid, 30)


# --------------------------------------------------------------------------------------------
# Ids: what uses up plan-counter and execution-counter numbers
# --------------------------------------------------------------------------------------------


def test_ids_of_the_first_registration_and_its_executions(r):
    assert pyexecute(r, "GB().register()") == "OK"
    assert [reg["id"] for reg in dump_registrations(r)] == [exec_id(1)]
    for k in ("a", "b", "c"):
        r.set(k, "v")
    wait_stats(r, exec_id(1), numSuccess=3)
    assert [x for x in dump_executions(r) if x[2] == 1] == [(exec_id(n), "done", 1) for n in (1, 2, 3)]


def test_ids_of_several_registrations_in_one_script(r):
    assert register(r, "GB().register('a*')\nGB().register('b*')\n") == [exec_id(1), exec_id(3)]
    # applying took plan number 4 (and execution 0); the next builder takes 5, its register() 6
    assert register(r, "GB().register('c*')") == [exec_id(6)]
    r.set("c1", "v")
    wait_stats(r, exec_id(6), numSuccess=1)
    # applications took executions 0 and 1
    assert registered_executions(r) == [exec_id(2)]


def test_register_with_bad_kwargs_uses_no_id(r, raw):
    for script, msg in [("GB().register(mode=1)", "execution mode must be a string"),
                        ("GB().register(prefix='k', eventTypes=5)", "given eventTypes is not iterable")]:
        res = raw.call("RG.PYEXECUTE", script)
        assert type(res) is Error and ("gears.error: " + msg) in res, res
    # the two builders took 0 and 1
    assert register(r, "GB().register('k*')") == [exec_id(3)]


def test_refused_registration_still_uses_its_id(r, raw):
    assert register(r, "GB('CommandReader').register(trigger='t')") == [exec_id(1)]
    # builder 3, register() 4: refused (at register() time, or while applying, which takes 5)
    res = refusal(raw, "GB('CommandReader').register(trigger='t')", "trigger already registered")
    assert register(r, "GB().register('k*')") == [exec_id(6 if type(res) is Error else 7)]
    assert [reg["id"] for reg in dump_registrations(r)] == [exec_id(1), exec_id(6 if type(res) is Error else 7)]


def test_executions_ids_of_events_and_runs_interleave(r):
    register_one(r, "GB().register('k*')")
    r.set("k1", "v")
    wait_stats(r, exec_id(1), numSuccess=1)
    assert registered_executions(r) == [exec_id(1)]
    assert pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING") == exec_id(2)


def test_gb_constructions_in_the_script_use_plan_numbers(r):
    # three builders (0, 1, 2), one register (3)
    assert register(r, "GB()\nGB('StreamReader')\nGB().register('k*')\n") == [exec_id(3)]


def test_sync_executions_use_execution_ids(r):
    register_one(r, COUNT_SCRIPT.format(extra=", mode='sync'"))
    for i in range(3):
        r.set(f"k{i}", "v")
    # application: execution 0; three sync executions: 1, 2, 3
    assert pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING") == exec_id(4)
