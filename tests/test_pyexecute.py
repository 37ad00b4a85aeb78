"""RG.PYEXECUTE: argument parsing, replies, blocking and UNBLOCKING runs, execution ids (docs/commands.md#ids, #rgpyexecute)."""

import redis

from conftest import (
    SHARD0,
    Error,
    Status,
    dump_executions,
    error_text,
    exec_id,
    id_number,
    pyexecute,
    wait_until,
)


def test_script_without_execution_replies_ok(r, raw):
    assert pyexecute(r, "1") == "OK"
    assert raw.call("RG.PYEXECUTE", "1") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "x = 1\ny = x + 1\n") == Status("OK")
    assert r.ping()


def test_wrong_arity(r, raw):
    # redis-py strips the "ERR " prefix; the raw reply keeps it.
    assert error_text(r, "RG.PYEXECUTE") == "wrong number of arguments for 'rg.pyexecute' command"
    assert raw.call("RG.PYEXECUTE") == Error("ERR wrong number of arguments for 'rg.pyexecute' command")
    assert r.ping()


def test_unblocking_without_execution_replies_ok(r):
    assert pyexecute(r, "1", "UNBLOCKING") == "OK"
    assert dump_executions(r) == []


def test_option_parsing_errors(raw):
    assert raw.call("RG.PYEXECUTE", "1", "ID") == Error("ID is missing")
    assert raw.call("RG.PYEXECUTE", "1", "DESCRIPTION") == Error("DESCRIPTION is missing")
    assert raw.call("RG.PYEXECUTE", "1", "REPLACE_WITH") == Error("REPLACE_WITH is missing")
    assert raw.call("RG.PYEXECUTE", "1", "ID", "a.b") == Error(
        "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"
    )
    assert raw.call("RG.PYEXECUTE", "1", "FOO") == Error("Unknown arguments were given: FOO")
    assert raw.call("RG.PYEXECUTE", "1", "UNBLOCKING", "bar") == Error("Unknown arguments were given: bar")
    assert raw.call("RG.PYEXECUTE", "1", "REQUIREMENTS", "redis") == Error(
        "Could not satisfy requirements, Python package installation is not supported"
    )
    # Everything after REQUIREMENTS is a requirement, even an option name.
    assert raw.call("RG.PYEXECUTE", "1", "REQUIREMENTS", "UNBLOCKING") == Error(
        "Could not satisfy requirements, Python package installation is not supported"
    )
    assert raw.call("RG.PYEXECUTE", "1") == Status("OK")


def test_options_accepted_in_any_case_and_order(raw):
    assert raw.call("RG.PYEXECUTE", "1", "REQUIREMENTS") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "1", "requirements") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "1", "unblocking") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "1", "description", "d", "UnBlocking", "id", "My-id_1") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "1", "FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS") == Status("OK")
    # A script that only runs never reserves its id: the same ID can be reused freely.
    assert raw.call("RG.PYEXECUTE", "1", "ID", "same") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "1", "ID", "same") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "ID", "same") == [[b"1"], []]
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "ID", "same") == [[b"1"], []]


def test_blocking_run_returns_results_and_drops_execution(r):
    for k in ("k1", "k2", "k3"):
        r.set(k, "v-" + k)
    res = pyexecute(r, "GB().map(lambda r: r['key']).run()")
    assert isinstance(res, list) and len(res) == 2
    results, errors = res
    assert sorted(results) == ["k1", "k2", "k3"]
    assert errors == []
    assert dump_executions(r) == []


def test_blocking_run_empty_keyspace(r):
    assert pyexecute(r, "GB().map(lambda r: r['key']).run()") == [[], []]
    assert dump_executions(r) == []


def test_blocking_run_keys_pattern(r):
    for k in ("a1", "a2", "ab", "b1", "ba"):
        r.set(k, "1")
    results, errors = pyexecute(r, "GB().map(lambda r: r['key']).run('a*')")
    assert sorted(results) == ["a1", "a2", "ab"]
    assert errors == []
    results, errors = pyexecute(r, "GB().map(lambda r: r['key']).run('?1')")
    assert sorted(results) == ["a1", "b1"]
    # defaultArg of the builder is used when run() gets no argument
    results, errors = pyexecute(r, "GB('KeysReader', 'b*').map(lambda r: r['key']).run()")
    assert sorted(results) == ["b1", "ba"]
    # the pattern is case-sensitive
    assert pyexecute(r, "GB().map(lambda r: r['key']).run('A*')") == [[], []]


def test_unblocking_replies_id_and_keeps_execution(r):
    eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert eid == exec_id(0)
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1"], []]
    assert dump_executions(r) == [(eid, "done", 0)]
    assert r.execute_command("RG.GETRESULTS", eid) == [["1"], []]
    # getting results does not drop it
    assert dump_executions(r) == [(eid, "done", 0)]


def test_unblocking_reply_is_bulk_string(raw):
    eid = raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert type(eid) is bytes
    assert eid == exec_id(0).encode()


def test_execution_counter(r):
    # Fresh server: executions take ids 0, 1, 2, ... ; GB() constructions and scripts without
    # executions do not consume execution ids; blocking runs do.
    assert pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING") == exec_id(0)
    assert pyexecute(r, "1") == "OK"
    assert pyexecute(r, "GB()\nGB('ShardsIDReader')\nGB('PythonReader')") == "OK"
    assert pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING") == exec_id(1)
    assert pyexecute(r, "GB('ShardsIDReader').run()") == [["1"], []]  # takes id 2
    assert pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING") == exec_id(3)
    listed = [i for i, _, _ in dump_executions(r)]
    assert listed == [exec_id(0), exec_id(1), exec_id(3)]


def test_ids_increase_and_are_never_reused(r):
    seen = []
    for i in range(30):
        eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
        assert eid.startswith(SHARD0 + "-")
        seen.append(id_number(eid))
        r.execute_command("RG.GETRESULTSBLOCKING", eid)
        if i % 2 == 0:
            assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)


def test_second_run_in_one_script_fails(r):
    script = "GB('ShardsIDReader').run()\nGB('ShardsIDReader').run()\n"
    msg = error_text(r, "RG.PYEXECUTE", script)
    assert "Can not run more then 1 executions in a single script" in msg
    assert msg.endswith("'gears.error: Can not run more then 1 executions in a single script\\n']"), msg
    msg = error_text(r, "RG.PYEXECUTE", script, "UNBLOCKING")
    assert "Can not run more then 1 executions in a single script" in msg
    # the execution the script had started is aborted and dropped
    wait_until(lambda: dump_executions(r) == [], what="executions list to become empty")
    assert r.ping()


def test_failing_script_after_run_drops_its_execution(r):
    msg = error_text(r, "RG.PYEXECUTE", "GB('ShardsIDReader').run()\n1/0\n", "UNBLOCKING")
    assert "ZeroDivisionError" in msg
    wait_until(lambda: dump_executions(r) == [], what="executions list to become empty")
    msg = error_text(r, "RG.PYEXECUTE", "GB('ShardsIDReader').run()\n1/0\n")
    assert "ZeroDivisionError" in msg
    wait_until(lambda: dump_executions(r) == [], what="executions list to become empty")
    assert r.ping()


def test_multiline_script_with_functions(r):
    script = (
        "def double(x):\n"
        "    return x * 2\n"
        "def gen():\n"
        "    for i in range(5):\n"
        "        yield i\n"
        "GB('PythonReader').map(double).run(gen)\n"
    )
    assert pyexecute(r, script) == [["0", "2", "4", "6", "8"], []]


def test_script_bytes_with_crlf_and_unicode(r):
    r.set("uk", "é€")
    assert pyexecute(r, "GB().map(lambda r: r['value']).run('uk')") == [["é€"], []]
    assert pyexecute(r, "x = 1\r\ny = 2\r\n") == "OK"


def test_results_in_raw_client_are_bulk_strings(raw):
    raw.call("SET", "x", "1")
    assert raw.call("RG.PYEXECUTE", "GB().map(lambda r: r['key']).run()") == [[b"x"], []]


def test_many_sequential_blocking_runs(r):
    for i in range(50):
        assert pyexecute(r, f"GB('ShardsIDReader').map(lambda r: {i}).run()") == [[str(i)], []]
    assert dump_executions(r) == []


def test_pipeline_of_blocking_runs(r):
    p = r.pipeline(transaction=False)
    for i in range(20):
        p.execute_command("RG.PYEXECUTE", f"GB('ShardsIDReader').map(lambda r: {i}).run()")
    out = p.execute()
    assert out == [[[str(i)], []] for i in range(20)]


def test_command_flags(raw):
    for name in ("rg.pyexecute", "rg.getresults", "rg.getresultsblocking", "rg.dumpexecutions",
                 "rg.dropexecution"):
        info = raw.call("COMMAND", "INFO", name)
        assert isinstance(info, list) and len(info) == 1 and info[0] is not None, (name, info)
        entry = info[0]
        assert entry[0] == name.encode()
        assert Status("readonly") in entry[2], (name, entry[2])
        assert entry[3:6] == [0, 0, 0], (name, entry[3:6])


def test_redis_py_error_class(r):
    try:
        pyexecute(r, "1/0")
    except redis.ResponseError as e:
        assert "ZeroDivisionError" in str(e)
    else:
        raise AssertionError("expected an error reply")
