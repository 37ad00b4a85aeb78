"""Nothing a script, a client or a hook does crashes Redis or steps past its ACLs
(docs/sandbox.md#security-model): crash and recursion bounds, and an ACL matrix whose verdicts
are compared with Lua's for the same user.

Every test runs against its own redis-server and ends by checking that it still answers PING.
"""

import pytest
import redis

from conftest import RawConnection, wait_until

DEEP = """
def deep(_):
    x = []
    for i in range(150000):
        x = [x]
    return x
"""


def user_client(server, name, password="pw"):
    return redis.Redis(host="127.0.0.1", port=server.port, username=name, password=password,
                       decode_responses=True, socket_timeout=60)


def error_of(fn, *args):
    try:
        fn(*args)
    except redis.ResponseError as e:
        return str(e)
    return None


def registrations(r):
    out = {}
    for entry in r.execute_command("RG.DUMPREGISTRATIONS"):
        d = dict(zip(entry[::2], entry[1::2]))
        out[d["id"]] = dict(zip(d["RegistrationData"][::2], d["RegistrationData"][1::2]))
    return out


# --- crashes and hangs --------------------------------------------------------------------


def test_nul_in_a_command_name_is_an_error(r):
    body = error_of(r.execute_command, "RG.PYEXECUTE", "execute('\\x00')")
    assert "unknown command" in body
    results, errors = r.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: execute('GET\\x00')).run()")
    assert results == [] and "unknown command" in errors[0]
    assert r.ping()


def test_a_record_nested_150000_deep_is_an_error_not_a_crash(r):
    results, errors = r.execute_command(
        "RG.PYEXECUTE", DEEP + "GB('ShardsIDReader').map(deep).run(convertToStr=False)")
    assert "nested more than 1000 lists deep" in str(results[0])
    assert errors == []
    r.execute_command("RG.PYEXECUTE", DEEP + "GB('CommandReader').map(deep).register(trigger='deep', mode='sync')")
    assert r.execute_command("RG.TRIGGER", "deep")
    # repr() and execute() of one.
    assert r.execute_command("RG.PYEXECUTE", DEEP + "r = repr(deep(0))\nexecute('SET', 'k', deep(0))") == "OK"
    assert r.ping()


def test_a_sync_trigger_calling_itself_stops_at_the_depth_limit(r):
    r.execute_command("RG.PYEXECUTE",
                      "GB('CommandReader').map(lambda x: execute('RG.TRIGGER', 'rec')).register(trigger='rec', mode='sync')")
    assert "sync executions nested more than 8 deep" in error_of(r.execute_command, "RG.TRIGGER", "rec")
    stats = next(iter(registrations(r).values()))
    assert stats["numFailures"] >= 1
    assert r.ping()


def test_a_sync_hook_writing_its_own_command_stops_at_the_depth_limit(r):
    r.execute_command("RG.PYEXECUTE",
                      "GB('CommandReader').map(lambda x: execute('SET', 'h', '1')).register(hook='set', mode='sync')")
    assert "nested more than 8 deep" in str(error_of(r.set, "h", "2") or r.get("h"))
    assert r.ping()


def test_a_sync_keys_registration_writing_what_it_matches_fires_once(r):
    r.execute_command("RG.PYEXECUTE",
                      "GB('KeysReader').foreach(lambda x: execute('INCR', 'b:count')).register(prefix='b*', mode='sync')")
    r.set("bx", 1)
    assert r.get("b:count") == "1"
    r.set("by", 1)
    assert r.get("b:count") == "2"


@pytest.mark.module_args("ExecutionThreads", "1")
def test_a_sync_registration_fired_inside_atomic_is_counted(server, r):
    r.execute_command("RG.PYEXECUTE",
                      "GB('KeysReader').foreach(lambda x: execute('INCR', 'cnt')).register(prefix='a*', mode='sync')")
    r.execute_command("RG.PYEXECUTE", "with atomic():\n    execute('SET', 'a1', 'v')\n    execute('SET', 'a2', 'v')")
    assert r.get("cnt") == "2"
    stats = next(iter(registrations(r).values()))
    assert (stats["numTriggered"], stats["numSuccess"], stats["numFailures"]) == (2, 2, 0)
    assert "RefCell" not in server.log()


# --- ACLs ----------------------------------------------------------------------------------

# (command, allowed for a user with `+get +set +incr +append ~user:*`)
MATRIX = [
    (["SET", "user:1", "x"], True),
    (["GET", "user:1"], True),
    (["INCR", "user:n"], True),
    (["SET", "secret", "x"], False),
    (["GET", "secret"], False),
    (["FLUSHALL"], False),
    (["ACL", "SETUSER", "lim", "+@all"], False),
    (["DEBUG", "SLEEP", "0"], False),
    (["MODULE", "LIST"], False),
    (["CONFIG", "SET", "maxmemory", "1"], False),
]
RIGHTS = ["+get", "+set", "+incr", "+append", "~user:*"]


def py_args(args):
    return ", ".join(repr(a) for a in args)


def lua_verdict(client, args):
    script = "return redis.call(" + ", ".join(repr(a) for a in args) + ")"
    return error_of(client.eval, script, 0) is None


@pytest.fixture
def lim(server, r):
    r.execute_command("ACL", "SETUSER", "lim", "on", ">pw", "+rg.pyexecute", "+rg.trigger", "+rg.dumpregistrations",
                      "+eval", *RIGHTS)
    r.set("secret", "s")
    return user_client(server, "lim")


@pytest.mark.parametrize("args,allowed", MATRIX, ids=[" ".join(a) for a, _ in MATRIX])
def test_execute_gives_luas_verdicts_in_a_body_and_a_step(lim, r, args, allowed):
    assert lua_verdict(lim, args) == allowed
    body = error_of(lim.execute_command, "RG.PYEXECUTE", f"execute({py_args(args)})")
    assert (body is None) == allowed, body
    if not allowed:
        assert "NOPERM" in body or "not allowed" in body
    results, errors = lim.execute_command("RG.PYEXECUTE",
                                          f"GB('ShardsIDReader').map(lambda x: execute({py_args(args)})).run()")
    assert (errors == []) == allowed, errors
    assert r.get("secret") == "s" and r.dbsize() > 0
    assert r.ping()


# How each kind of registration, made by `lim`, is fired by a client with every right.
FIRED_BY = {
    "trigger": ("GB('CommandReader').foreach(lambda x: {call}).register(trigger='go', mode='sync')",
                lambda r: r.execute_command("RG.TRIGGER", "go")),
    "hook": ("GB('CommandReader').foreach(lambda x: {call}).map(lambda x: call_next(*x[1:]))"
             ".register(hook='append', mode='sync')",
             lambda r: r.append("user:h", "v")),
    "keys": ("GB().foreach(lambda x: {call}).register(prefix='user:k*', eventTypes=['set'], mode='sync')",
             lambda r: r.set("user:k1", "v")),
}


@pytest.mark.parametrize("kind", sorted(FIRED_BY))
@pytest.mark.parametrize("args,allowed", MATRIX, ids=[" ".join(a) for a, _ in MATRIX])
def test_registrations_give_luas_verdicts_as_their_owner(lim, r, kind, args, allowed):
    assert lua_verdict(lim, args) == allowed
    script, fire = FIRED_BY[kind]
    call = f"execute({py_args(args)})"
    lim.execute_command("RG.PYEXECUTE", script.format(call=call))
    refusal = error_of(fire, r)
    stats = next(iter(registrations(r).values()))
    assert stats["numTriggered"] == 1, stats
    failed = stats["numFailures"] == 1 or refusal is not None
    assert failed != allowed, (refusal, stats)
    assert r.get("secret") == "s" and r.ping()


def test_refusals_are_logged_and_use_redis_texts(lim, r):
    text = error_of(lim.execute_command, "RG.PYEXECUTE", "execute('FLUSHALL')")
    assert "NOPERM this user has no permissions to run the 'flushall' command" in text
    text = error_of(lim.execute_command, "RG.PYEXECUTE", "execute('ACL', 'SETUSER', 'lim', '+@all')")
    assert "'acl|setuser'" in text
    text = error_of(lim.execute_command, "RG.PYEXECUTE", "execute('SET', 'secret', 'x')")
    assert "NOPERM this user has no permissions to access one of the keys used as arguments" in text
    log = r.execute_command("ACL", "LOG")
    entries = [dict(zip(e[::2], e[1::2])) for e in log]
    assert any(e["username"] == "lim" and e["object"] == "flushall" and e["context"] == "module" for e in entries)
    assert any(e["username"] == "lim" and e["reason"] == "key" and e["object"] == "secret" for e in entries)


def test_eval_through_execute_runs_as_the_user(lim, r):
    text = error_of(lim.execute_command, "RG.PYEXECUTE", "execute('EVAL', \"return redis.call('SET', 'secret', 'x')\", 0)")
    assert text is not None and r.get("secret") == "s"


def test_a_reader_reads_only_what_the_user_may(lim, r):
    r.set("user:a", "1")
    keys = lim.execute_command("RG.PYEXECUTE", "GB().map(lambda x: x['key']).run()")[0]
    assert keys == ["user:a"]


def test_registrations_run_as_their_owner(lim, r):
    lim.execute_command("RG.PYEXECUTE",
                        "GB('CommandReader').map(lambda x: execute('SET', x[1], 'v')).register(trigger='put')")
    assert lim.execute_command("RG.TRIGGER", "put", "user:t") == ["OK"]
    # A client with every right triggers it: the execution still runs as lim.
    assert "NOPERM" in error_of(r.execute_command, "RG.TRIGGER", "put", "secret")
    assert r.get("secret") == "s"
    lim.execute_command("RG.PYEXECUTE",
                        "GB().foreach(lambda x: execute('SET', 'secret', 'x')).register(prefix='user:*', mode='sync')")
    r.set("user:z", "1")
    assert r.get("secret") == "s"
    stats = [s for s in registrations(r).values() if s["numTriggered"]]
    assert any("NOPERM" in str(s["lastError"]) for s in stats)


def test_registration_owners_survive_a_reload(lim, r):
    lim.execute_command("RG.PYEXECUTE",
                        "GB('CommandReader').map(lambda x: execute('SET', x[1], 'v')).register(trigger='put')")
    r.execute_command("DEBUG", "RELOAD")
    wait_until(lambda: r.execute_command("RG.DUMPREGISTRATIONS"), what="registrations reloaded")
    assert "NOPERM" in error_of(r.execute_command, "RG.TRIGGER", "put", "secret")
    assert r.get("secret") == "s"


def test_only_the_owner_or_an_admin_manages_a_session(server, lim, r):
    lim.execute_command("RG.PYEXECUTE", "GB('CommandReader').register(trigger='t1')", "ID", "limsession")
    r.execute_command("ACL", "SETUSER", "other", "on", ">pw", "+rg.pyexecute", "+rg.unregister",
                      "+rg.dumpregistrations", "~*")
    other = user_client(server, "other")
    reg_id = next(iter(registrations(r)))
    # redis-py strips the NOPERM code from the text; RawConnection keeps it.
    assert "only the user that registered session limsession" in error_of(
        other.execute_command, "RG.UNREGISTER", reg_id)
    assert "only the user that registered session limsession" in error_of(
        other.execute_command, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='t2')",
        "ID", "limsession", "UPGRADE")
    raw = RawConnection(server.port)
    assert raw.call("AUTH", "other", "pw") == "OK"
    assert str(raw.call("RG.UNREGISTER", reg_id)).startswith("NOPERM only the user")
    raw.close()
    assert r.execute_command("RG.UNREGISTER", reg_id) == "OK"


# --- hooks keep Redis's view of the hooked command -----------------------------------------


@pytest.fixture
def hooked(server, r):
    r.execute_command("RG.PYEXECUTE",
                      "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='sync')")
    r.execute_command("ACL", "SETUSER", "w", "on", ">pw", "+@write", "~user:*")
    r.set("secret", "s")
    return user_client(server, "w")


def test_hooked_commands_keep_their_acls(hooked, r):
    assert hooked.set("user:1", "x")
    assert "no permissions to access one of the keys" in error_of(hooked.set, "secret", "x")
    assert r.get("secret") == "s"
    assert r.execute_command("ACL", "DRYRUN", "w", "SET", "user:2", "v") == "OK"


def test_rg_innerhook_runs_nothing_a_client_sends(hooked, r):
    for args in (["RG.INNERHOOK", "SET", "secret", "y"], ["RG.INNERHOOK", "x", "SET", "secret", "y"],
                 ["RG.INNERHOOKAUTH", "x", "SET", "secret", "y"]):
        assert "internal" in error_of(r.execute_command, *args)
        # Redis's own key check may refuse first ('secret' is outside ~user:*): refused either way.
        refusal = str(error_of(hooked.execute_command, *args))
        assert "internal" in refusal or "no permissions" in refusal, refusal
    assert r.get("secret") == "s"


def test_unauthenticated_clients_get_no_hooked_command(server, hooked, r):
    r.config_set("requirepass", "pass")
    try:
        # A raw RESP2 connection: redis-py would fail its HELLO before sending the command.
        anonymous = RawConnection(server.port)
        assert str(anonymous.call("SET", "user:1", "y")).startswith("NOAUTH")
        anonymous.close()
        admin = redis.Redis(host="127.0.0.1", port=server.port, password="pass", decode_responses=True)
        assert admin.set("user:1", "z") and admin.get("user:1") == "z"
    finally:
        admin = RawConnection(server.port)
        admin.call("AUTH", "pass")
        admin.call("CONFIG", "SET", "requirepass", "")
        admin.close()
    assert r.get("user:1") == "z"
