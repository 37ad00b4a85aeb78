"""execute(): Redis calls from scripts and steps, reply conversion, database choice, replication
(docs/python-api.md#execute, docs/commands.md#database, docs/commands.md#replication)."""

from conftest import dump_executions, pyexecute, wait_until


def test_execute_set_get_in_script_body(r):
    assert pyexecute(r, "execute('SET', 'k', 'v')") == "OK"
    assert r.get("k") == "v"


def test_execute_in_map(r):
    r.set("k", "v")
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: execute('GET', 'k')).run()") == [["v"], []]


def test_execute_reply_types(r):
    r.set("k", "v")
    r.rpush("l", "a", "b")
    script = (
        "def gen():\n"
        "    yield execute('GET', 'k')\n"
        "    yield execute('GET', 'missing')\n"
        "    yield execute('INCR', 'cnt')\n"
        "    yield execute('LRANGE', 'l', '0', '-1')\n"
        "    yield execute('SET', 'k2', 'v2')\n"
        "    yield execute('PING')\n"
        "    yield execute()\n"
        "GB('PythonReader').map(lambda x: repr(x)).run(gen)\n"
    )
    assert pyexecute(r, script) == [["'v'", "None", "1", "['a', 'b']", "'OK'", "'PONG'", "[]"], []]


def test_execute_int_reply_is_int(r):
    script = "GB('ShardsIDReader').map(lambda x: execute('INCR', 'c')).run(convertToStr=False)"
    assert pyexecute(r, script) == [[1], []]
    assert pyexecute(r, script) == [[2], []]
    assert r.get("c") == "2"


def test_execute_args_are_stringified(r):
    assert pyexecute(r, "execute('SET', 'n', 42)\nexecute('SET', 'f', 1.5)\nexecute('SET', 'b', b'raw')") == "OK"
    assert r.get("n") == "42"
    assert r.get("f") == "1.5"
    assert r.get("b") == "raw"


def test_execute_binary_values(server):
    raw = server.raw()
    assert raw.call("RG.PYEXECUTE", "execute('SET', 'bin', b'\\x00\\xff\\x01')") == "OK"
    assert raw.call("GET", "bin") == b"\x00\xff\x01"
    script = "GB('ShardsIDReader').map(lambda x: repr(execute('GET', 'bin'))).run()"
    assert raw.call("RG.PYEXECUTE", script) == [[b"bytearray(b'\\x00\\xff\\x01')"], []]


def test_execute_command_must_be_str(r):
    try:
        pyexecute(r, "execute(1)")
    except Exception as e:
        assert "the given command must be a string" in str(e)
    else:
        raise AssertionError("expected an error")


def test_execute_writes_from_keysreader(r):
    for i in range(5):
        r.set(f"src{i}", i)
    script = "GB().foreach(lambda x: execute('SET', 'copy_' + x['key'], x['value'])).map(lambda x: x['key']).run('src*')"
    results, errors = pyexecute(r, script)
    assert errors == [] and sorted(results) == [f"src{i}" for i in range(5)]
    for i in range(5):
        assert r.get(f"copy_src{i}") == str(i)


def test_execute_in_unblocking_run(r):
    eid = pyexecute(r, "GB('PythonReader').foreach(lambda x: execute('RPUSH', 'out', x)).run(lambda: iter(['a', 'b', 'c']))",
                    "UNBLOCKING")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["a", "b", "c"], []]
    assert r.lrange("out", 0, -1) == ["a", "b", "c"]


def test_caller_database_is_used(server):
    c3 = server.client(db=3)
    c0 = server.client(db=0)
    c3.set("dbk", "in3")
    c0.set("dbk", "in0")
    assert pyexecute(c3, "GB('ShardsIDReader').map(lambda r: execute('GET', 'dbk')).run()") == [["in3"], []]
    assert pyexecute(c0, "GB('ShardsIDReader').map(lambda r: execute('GET', 'dbk')).run()") == [["in0"], []]
    # the script body too
    assert pyexecute(c3, "execute('SET', 'written', execute('GET', 'dbk'))") == "OK"
    assert c3.get("written") == "in3"
    assert c0.exists("written") == 0
    # KeysReader reads the caller's database
    c3.set("only3", "x")
    assert pyexecute(c3, "GB().map(lambda r: r['key']).run('only*')") == [["only3"], []]
    assert pyexecute(c0, "GB().map(lambda r: r['key']).run('only*')") == [[], []]
    # UNBLOCKING executions as well
    eid = pyexecute(c3, "GB('ShardsIDReader').map(lambda r: execute('GET', 'dbk')).run()", "UNBLOCKING")
    assert c0.execute_command("RG.GETRESULTSBLOCKING", eid) == [["in3"], []]


def test_select_on_raw_connection(server):
    raw = server.raw()
    assert raw.call("SELECT", "5") == "OK"
    assert raw.call("SET", "k5", "five") == "OK"
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda r: execute('GET', 'k5')).run()") == [[b"five"], []]
    assert raw.call("SELECT", "0") == "OK"
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda r: str(execute('GET', 'k5'))).run()") == [[b"None"], []]


def test_writes_are_replicated(start_server):
    primary = start_server()
    replica = start_server()
    p = primary.client()
    rep = replica.client()
    assert rep.execute_command("REPLICAOF", "127.0.0.1", primary.port) == "OK"
    wait_until(lambda: rep.info("replication").get("master_link_status") == "up",
               what="the replica link to come up")
    assert pyexecute(p, "execute('SET', 'rk', 'rv')") == "OK"
    assert pyexecute(p, "GB('ShardsIDReader').map(lambda r: execute('INCR', 'rc')).run()") == [["1"], []]
    eid = pyexecute(p, "GB('PythonReader').foreach(lambda x: execute('RPUSH', 'rl', x)).run(lambda: iter(['a', 'b']))",
                    "UNBLOCKING")
    assert p.execute_command("RG.GETRESULTSBLOCKING", eid) == [["a", "b"], []]
    assert pyexecute(p, "execute('SET', 'last', 'yes')") == "OK"
    wait_until(lambda: rep.get("last") == "yes", what="the writes to reach the replica")
    assert rep.get("rk") == "rv"
    assert rep.get("rc") == "1"
    assert rep.lrange("rl", 0, -1) == ["a", "b"]
    # RG.PYEXECUTE itself is not propagated: the replica ran nothing
    assert dump_executions(rep) == []
    assert p.execute_command("WAIT", 1, 60000) == 1
    assert rep.get("rc") == "1"
    assert primary.alive() and replica.alive()


def test_writes_replicated_in_selected_db(start_server):
    primary = start_server()
    replica = start_server()
    rep = replica.client(db=2)
    assert rep.execute_command("REPLICAOF", "127.0.0.1", primary.port) == "OK"
    wait_until(lambda: rep.info("replication").get("master_link_status") == "up",
               what="the replica link to come up")
    p2 = primary.client(db=2)
    assert pyexecute(p2, "execute('SET', 'dbrep', 'two')") == "OK"
    wait_until(lambda: rep.get("dbrep") == "two", what="the write to reach db 2 of the replica")
    assert replica.client(db=0).exists("dbrep") == 0
