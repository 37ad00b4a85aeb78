"""Readers, record shapes, operations and the record -> RESP conversion (docs/commands.md#the-results-errors-reply, docs/python-api.md#operations to #readers)."""

import pytest
import redis

from conftest import Error, Status, pyexecute


# ------------------------------------------------------------------------------------------
# KeysReader record shapes
# ------------------------------------------------------------------------------------------


def test_keysreader_string_record(r):
    r.set("x", "1")
    assert pyexecute(r, "GB().run()") == [["{'key': 'x', 'value': '1', 'type': 'string', 'event': None}"], []]
    assert pyexecute(r, "GB().map(lambda r: str(r)).run()") == [
        ["{'key': 'x', 'value': '1', 'type': 'string', 'event': None}"], []]


def test_keysreader_hash_record(r):
    r.hset("h", mapping={"f1": "v1", "f2": "v2"})
    assert pyexecute(r, "GB().run('h')") == [
        ["{'key': 'h', 'value': {'f1': 'v1', 'f2': 'v2'}, 'type': 'hash', 'event': None}"], []]
    assert pyexecute(r, "GB().map(lambda r: r['value']['f2']).run('h')") == [["v2"], []]


def test_keysreader_list_record(r):
    r.rpush("l", "a", "b", "c")
    assert pyexecute(r, "GB().run('l')") == [
        ["{'key': 'l', 'value': ['a', 'b', 'c'], 'type': 'list', 'event': None}"], []]


def test_keysreader_other_types(r):
    r.sadd("s", "m1")
    r.zadd("z", {"m1": 1})
    r.xadd("st", {"f": "v"})
    results, errors = pyexecute(r, "GB().run()")
    assert errors == []
    assert sorted(results) == sorted([
        "{'key': 's', 'value': None, 'type': 'set', 'event': None}",
        "{'key': 'z', 'value': None, 'type': 'zset', 'event': None}",
        "{'key': 'st', 'value': None, 'type': 'unknown', 'event': None}",
    ])


def test_keysreader_missing_key_with_noscan(r):
    assert pyexecute(r, "GB().run('nokey', noScan=True)") == [
        ["{'key': 'nokey', 'value': None, 'type': 'empty', 'event': None}"], []]


def test_keysreader_readvalue_false(r):
    r.set("x", "1")
    assert pyexecute(r, "GB().run(readValue=False)") == [["{'key': 'x', 'event': None}"], []]


def test_keysreader_non_utf8_value_is_bytearray(raw):
    raw.call("SET", "bin", b"\xff\xfe")
    assert raw.call("RG.PYEXECUTE", "GB().run('bin')") == [
        [b"{'key': 'bin', 'value': bytearray(b'\\xff\\xfe'), 'type': 'string', 'event': None}"], []]
    assert raw.call("RG.PYEXECUTE", "GB().map(lambda r: type(r['value']).__name__).run('bin')") == [
        [b"bytearray"], []]


def test_keysreader_embedded_nul(raw):
    raw.call("SET", "nul", b"a\x00b")
    assert raw.call("RG.PYEXECUTE", "GB().map(lambda r: len(r['value'])).run('nul')") == [[b"3"], []]


def test_keysreader_record_field_types(r):
    r.set("x", "1")
    script = "GB().map(lambda r: [type(r['key']).__name__, type(r['value']).__name__, r['event'] is None]).run()"
    assert pyexecute(r, script) == [["['str', 'str', True]"], []]


def test_keysreader_many_keys(r):
    p = r.pipeline(transaction=False)
    for i in range(2500):
        p.set(f"many:{i}", i)
    p.execute()
    results, errors = pyexecute(r, "GB().map(lambda r: r['key']).run('many:*')")
    assert errors == []
    assert sorted(results) == sorted(f"many:{i}" for i in range(2500))


def test_keysreader_dict_record_without_convert(raw):
    raw.call("SET", "x", "1")
    assert raw.call("RG.PYEXECUTE", "GB().run(convertToStr=False)") == [[b"PY RECORD"], []]


# ------------------------------------------------------------------------------------------
# ShardsIDReader, PythonReader
# ------------------------------------------------------------------------------------------


def test_shardsidreader(r, raw):
    assert pyexecute(r, "GB('ShardsIDReader').run()") == [["1"], []]
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()") == [[b"1"], []]


def test_pythonreader_generator(r):
    script = "def gen():\n    yield 1\n    yield 'a'\nGB('PythonReader').run(gen)\n"
    assert pyexecute(r, script) == [["1", "a"], []]


def test_pythonreader_iterator_and_order(r):
    assert pyexecute(r, "GB('PythonReader').run(lambda: iter(range(100)))") == [
        [str(i) for i in range(100)], []]


def test_pythonreader_non_iterator_return_is_one_record(r):
    # A function that returns no generator/iterator: its value is one record, and the reader ends.
    assert pyexecute(r, "GB('PythonReader').run(lambda: 5)") == [["5"], []]


def test_pythonreader_empty(r):
    assert pyexecute(r, "GB('PythonReader').run(lambda: iter([]))") == [[], []]


# ------------------------------------------------------------------------------------------
# Record conversion (docs/commands.md#the-results-errors-reply)
# ------------------------------------------------------------------------------------------

CONVERSION_SCRIPT = r"""
class Obj:
    pass
def gen():
    for v in ['+OK', '-no', '+', '-', '', 'plain', b'raw\x00bytes', 5, -7, True, False,
              2**63 - 1, -2**63, 2**70, -2**70, 49.5, float('inf'), -2.25,
              [1, 'a', [2.5, '+S', '-E']], [], {'a': 1}, (1, 2), None, {1}, bytearray(b'x'), Obj()]:
        yield v
GB('PythonReader').run(gen, convertToStr=False)
"""

CONVERSION_EXPECTED = [
    Status("OK"),
    Error("no"),
    b"+",
    b"-",
    b"",
    b"plain",
    b"raw\x00bytes",
    5,
    -7,
    1,
    0,
    2**63 - 1,
    -2**63,
    -1,
    -1,
    b"49.500000",
    b"inf",
    b"-2.250000",
    [1, b"a", [b"2.500000", Status("S"), Error("E")]],
    [],
    b"PY RECORD",
    b"PY RECORD",
    b"PY RECORD",
    b"PY RECORD",
    b"PY RECORD",
    b"PY RECORD",
]


def test_conversion_table_raw_types(raw):
    res = raw.call("RG.PYEXECUTE", CONVERSION_SCRIPT)
    assert isinstance(res, list) and len(res) == 2, res
    results, errors = res
    assert errors == []
    assert len(results) == len(CONVERSION_EXPECTED)
    for got, want in zip(results, CONVERSION_EXPECTED):
        assert type(got) is type(want) and got == want, (got, want)


def test_conversion_error_element_with_redis_py(r):
    results, errors = pyexecute(r, "GB('PythonReader').run(lambda: iter(['+OK', '-no', 'x']), convertToStr=False)")
    assert errors == []
    assert results[0] == "OK"
    assert isinstance(results[1], redis.ResponseError)
    assert str(results[1]) == "no"
    assert results[2] == "x"


def test_conversion_with_convert_to_str(raw):
    script = r"""
def gen():
    for v in ['+OK', '-no', 5, True, None, 2.5, (1, 'a'), {'k': 'v', 'n': [1, None]}, b'x', [1, 2],
              "it's", ["it's", 'say "hi"', '\\', '\n'], {1.0: {2}}]:
        yield v
GB('PythonReader').run(gen)
"""
    results, errors = raw.call("RG.PYEXECUTE", script)
    assert errors == []
    assert results == [
        Status("OK"),
        Error("no"),
        b"5",
        b"True",
        b"None",
        b"2.5",
        b"(1, 'a')",
        b"{'k': 'v', 'n': [1, None]}",
        b"b'x'",
        b"[1, 2]",
        b"it's",
        b"[\"it's\", 'say \"hi\"', '\\\\', '\\n']",
        b"{1.0: {2}}",
    ]


def test_results_and_errors_resp3(server):
    raw = server.raw()
    hello = raw.call("HELLO", "3")
    assert isinstance(hello, list)
    res = raw.call("RG.PYEXECUTE", "GB('PythonReader').run(lambda: iter(['+OK', 'b', 3, 1.5, [1]]), convertToStr=False)")
    assert res == [[Status("OK"), b"b", 3, b"1.500000", [1]], []]
    res = raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda r: 1/0).run()")
    assert isinstance(res, list) and res[0] == [] and len(res[1]) == 1
    assert type(res[1][0]) is bytes and b"ZeroDivisionError" in res[1][0]
    eid = raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert raw.call("RG.GETRESULTSBLOCKING", eid) == [[b"1"], []]
    assert raw.call("RG.DUMPEXECUTIONS") == [[b"executionId", eid, b"status", b"done", b"registered", 0]]


# ------------------------------------------------------------------------------------------
# Operations (docs/python-api.md#operations)
# ------------------------------------------------------------------------------------------


def test_map_chain(r):
    script = "GB('PythonReader').map(lambda x: x + 1).map(lambda x: x * 10).run(lambda: iter([1, 2, 3]))"
    assert pyexecute(r, script) == [["20", "30", "40"], []]


def test_filter(r):
    script = "GB('PythonReader').filter(lambda x: x % 2 == 0).run(lambda: iter(range(10)))"
    assert pyexecute(r, script) == [["0", "2", "4", "6", "8"], []]
    # truthiness, and the same object passes on
    script = "GB('PythonReader').filter(lambda x: x).run(lambda: iter([0, 'a', '', [], [0], None, {'k': 1}]))"
    assert pyexecute(r, script) == [["a", "[0]", "{'k': 1}"], []]


def test_foreach_mutation_visible_downstream(r):
    script = (
        "def add(r):\n"
        "    r['b'] = r['a'] * 2\n"
        "    return 'ignored'\n"
        "GB('PythonReader').foreach(add).map(lambda r: r['b']).run(lambda: iter([{'a': 1}, {'a': 2}]))\n"
    )
    assert pyexecute(r, script) == [["2", "4"], []]
    # the return value of foreach is ignored: the record itself passes on
    script = "GB('PythonReader').foreach(lambda r: None).run(lambda: iter(['a', 'b']))"
    assert pyexecute(r, script) == [["a", "b"], []]


def test_flatmap_semantics(r):
    script = (
        "def gen():\n"
        "    yield [1, 2, 3]\n"
        "    yield 'xy'\n"
        "    yield []\n"
        "    yield (4, 5)\n"
        "    yield None\n"
        "    yield [[6, 7]]\n"
        "GB('PythonReader').flatmap(lambda r: r).run(gen)\n"
    )
    assert pyexecute(r, script) == [["3", "2", "1", "xy", "(4, 5)", "None", "[6, 7]"], []]


def test_flatmap_keys(r):
    r.rpush("l", "a", "b", "c")
    assert pyexecute(r, "GB().flatmap(lambda r: r['value']).run('l')") == [["c", "b", "a"], []]


def test_flatmap_set_is_one_record(r):
    assert pyexecute(r, "GB('ShardsIDReader').flatmap(lambda r: {1}).run()") == [["{1}"], []]


def test_collect_is_noop(r):
    assert pyexecute(r, "GB('ShardsIDReader').collect().run()") == [["1"], []]
    assert pyexecute(r, "GB('PythonReader').collect().map(lambda x: x * 2).collect().run(lambda: iter([1, 2]))") == [
        ["2", "4"], []]
    assert pyexecute(r, "GB('PythonReader').run(lambda: iter([1, 2]), collect=False)") == [["1", "2"], []]


def test_operations_return_builder_for_chaining(r):
    script = (
        "b = GB('PythonReader')\n"
        "b2 = b.map(lambda x: x + 1)\n"
        "assert b2 is b\n"
        "assert b.filter(lambda x: True) is b\n"
        "assert b.foreach(lambda x: None) is b\n"
        "assert b.flatmap(lambda x: [x]) is b\n"
        "assert b.collect() is b\n"
        "b.run(lambda: iter([1]))\n"
    )
    assert pyexecute(r, script) == [["2"], []]


def test_gearsbuilder_alias(r):
    assert pyexecute(r, "GearsBuilder('ShardsIDReader').run()") == [["1"], []]


@pytest.mark.parametrize("op", ["map", "filter", "foreach", "flatmap"])
def test_operation_argument_checks(r, op):
    msg = pytest.raises(redis.ResponseError, pyexecute, r, f"GB().{op}()").value
    assert f"wrong number of args to {op} function" in str(msg)
    msg = pytest.raises(redis.ResponseError, pyexecute, r, f"GB().{op}(1)").value
    assert f"{op} argument must be a function" in str(msg)
    assert r.ping()
