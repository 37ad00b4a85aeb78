"""Readers in batch mode and run() (docs/python-api.md#gearsbuilder, #run, #readers): KeysReader,
KeysOnlyReader, StreamReader, PythonReader, ShardsIDReader, CommandReader; run() kwargs and their error texts.

SCAN order is unspecified, so results of scanning readers are sorted before comparing.
"""

import pytest

from conftest import Error, assert_gears_error, pyexecute, script_error, tb_end


def sorted_run(r, script):
    results, errors = pyexecute(r, script)
    return [sorted(results), errors]


def keys_of(r, pattern, **kw):
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    return sorted_run(r, f"GB().map(lambda r: r['key']).run({pattern!r}{extra})")


# ------------------------------------------------------------------------------------------
# GearsBuilder construction
# ------------------------------------------------------------------------------------------


def test_gb_and_gearsbuilder_alias(r):
    assert pyexecute(r, "GearsBuilder('ShardsIDReader').run()") == [["1"], []]
    assert pyexecute(r, "GB('ShardsIDReader', '*', 'my desc').run()") == [["1"], []]
    assert pyexecute(r, "GB('ShardsIDReader', desc=None).run()") == [["1"], []]
    assert pyexecute(r, "execute('SET', 'same', str(GB is GearsBuilder))") == "OK"
    assert r.get("same") == "True"


def test_gb_reader_must_be_string(raw):
    assert_gears_error(raw, "GB(1)", "reader argument must be a string")
    assert_gears_error(raw, "GB(None)", "reader argument must be a string")


def test_gb_desc_must_be_string(raw):
    assert_gears_error(raw, "GB('KeysReader', '*', 5)", "desc argument must be a string")
    assert_gears_error(raw, "GB('KeysReader', desc=b'x')", "desc argument must be a string")


def test_gb_unknown_reader(raw):
    assert_gears_error(raw, "GB('NoSuchReader')", "The given reader does not exists")
    assert_gears_error(raw, "GB('keysreader')", "The given reader does not exists")


def test_gb_all_readers_constructible(r):
    script = "\n".join(
        f"GB({name!r})" for name in
        ["KeysReader", "KeysOnlyReader", "StreamReader", "PythonReader", "ShardsIDReader", "CommandReader"])
    assert pyexecute(r, script) == "OK"


def test_default_arg_used_when_arg_missing_or_falsy(r):
    r.mset({"p:1": "a", "p:2": "b", "q:1": "c"})
    for run_arg in ["", "None", "''", "0"]:
        assert sorted_run(r, f"GB('KeysReader', 'p:*').map(lambda r: r['key']).run({run_arg})") == [
            ["p:1", "p:2"], []], run_arg
    assert sorted_run(r, "GB('KeysReader', 'p:*').map(lambda r: r['key']).run('q:*')") == [["q:1"], []]


# ------------------------------------------------------------------------------------------
# KeysReader
# ------------------------------------------------------------------------------------------


def test_keysreader_value_and_type_by_key_type(r):
    r.set("str", "v")
    r.hset("hash", mapping={"f1": "1", "f2": "2"})
    r.rpush("list", "x", "y", "z")
    r.sadd("set", "m")
    r.zadd("zset", {"m": 1})
    r.xadd("stream", {"f": "v"})
    assert sorted_run(r, "GB().run()") == [sorted([
        "{'key': 'str', 'value': 'v', 'type': 'string', 'event': None}",
        "{'key': 'hash', 'value': {'f1': '1', 'f2': '2'}, 'type': 'hash', 'event': None}",
        "{'key': 'list', 'value': ['x', 'y', 'z'], 'type': 'list', 'event': None}",
        "{'key': 'set', 'value': None, 'type': 'set', 'event': None}",
        "{'key': 'zset', 'value': None, 'type': 'zset', 'event': None}",
        "{'key': 'stream', 'value': None, 'type': 'unknown', 'event': None}",
    ]), []]


def test_keysreader_hash_in_hgetall_order(r):
    r.hset("h", mapping={"b": "1", "a": "2", "c": "3"})
    order = r.hkeys("h")
    assert pyexecute(r, "GB().map(lambda r: list(r['value'].keys())).run('h')") == [[repr(order)], []]


def test_keysreader_record_types(r):
    r.hset("h", "f", "v")
    script = "GB().map(lambda r: [type(r).__name__, type(r['value']).__name__, list(r.keys())]).run('h')"
    assert pyexecute(r, script) == [["['dict', 'dict', ['key', 'value', 'type', 'event']]"], []]


@pytest.mark.parametrize("pattern, expected", [
    ("*", ["A1", "a*", "a1", "a2", "ab1", "b1"]),
    ("a?", ["a*", "a1", "a2"]),
    ("[ab]1", ["a1", "b1"]),
    ("a\\*", ["a*"]),
    ("A*", ["A1"]),
    ("a*1", ["a1", "ab1"]),
    ("nothing*", []),
])
def test_keysreader_glob_patterns(r, pattern, expected):
    for k in ["a1", "a2", "ab1", "b1", "A1", "a*"]:
        r.set(k, "v")
    assert keys_of(r, pattern) == [expected, []]


def test_keysreader_noscan_reads_one_exact_key(r):
    r.set("k*", "star")
    r.set("k1", "one")
    assert pyexecute(r, "GB().run('k*', noScan=True)") == [
        ["{'key': 'k*', 'value': 'star', 'type': 'string', 'event': None}"], []]


def test_keysreader_noscan_missing_key_is_read(r):
    assert pyexecute(r, "GB().run('absent', noScan=True)") == [
        ["{'key': 'absent', 'value': None, 'type': 'empty', 'event': None}"], []]


def test_keysreader_noscan_false_explicit(r):
    r.set("a1", "v")
    assert keys_of(r, "a*", noScan=False) == [["a1"], []]


def test_keysreader_read_value_false(r):
    r.hset("h", "f", "v")
    assert pyexecute(r, "GB().run('h', readValue=False)") == [["{'key': 'h', 'event': None}"], []]
    assert pyexecute(r, "GB().run('h', readValue=False, noScan=True)") == [["{'key': 'h', 'event': None}"], []]
    assert pyexecute(r, "GB().run('h', readValue=True)") == [
        ["{'key': 'h', 'value': {'f': 'v'}, 'type': 'hash', 'event': None}"], []]


def test_keysreader_non_utf8_hash_value_is_bytearray(raw):
    raw.call("HSET", "h", "f", b"\xfe")
    raw.call("RPUSH", "l", b"\xff", "ok")
    assert raw.call("RG.PYEXECUTE", "GB().map(lambda r: repr(r['value'])).run('h')") == [
        [b"{'f': bytearray(b'\\xfe')}"], []]
    assert raw.call("RG.PYEXECUTE", "GB().map(lambda r: repr(r['value'])).run('l')") == [
        [b"[bytearray(b'\\xff'), 'ok']"], []]


def test_keysreader_empty_keyspace(r):
    assert pyexecute(r, "GB().run()") == [[], []]


def test_keysreader_many_keys_all_read_once(r):
    r.execute_command("DEBUG", "POPULATE", "5000", "pop")
    results, errors = pyexecute(r, "GB().map(lambda r: r['key']).run('pop:*')")
    assert errors == []
    assert len(results) == 5000 and len(set(results)) == 5000


@pytest.mark.parametrize("arg", ["1", "b'*'", "['*']"])
def test_keysreader_pattern_must_be_string(raw, arg):
    assert_gears_error(raw, f"GB().run({arg})", "regex argument must be a string")


@pytest.mark.parametrize("value", ["1", "'true'", "None"])
def test_keysreader_noscan_must_be_bool(raw, value):
    assert_gears_error(raw, f"GB().run('x', noScan={value})", "exactMatch value is not boolean")


@pytest.mark.parametrize("value", ["1", "'yes'", "None"])
def test_keysreader_readvalue_must_be_bool(raw, value):
    assert_gears_error(raw, f"GB().run('x', readValue={value})", "readValue value is not boolean")


# ------------------------------------------------------------------------------------------
# KeysOnlyReader
# ------------------------------------------------------------------------------------------


def seed_ab(r):
    r.mset({"a1": "1", "a2": "2", "b1": "3"})
    r.hset("ah", "f", "v")


def test_keysonlyreader_yields_key_names(r):
    seed_ab(r)
    assert sorted_run(r, "GB('KeysOnlyReader').run()") == [["a1", "a2", "ah", "b1"], []]
    assert pyexecute(r, "GB('KeysOnlyReader').map(lambda k: type(k).__name__).run('b1')") == [["str"], []]


def test_keysonlyreader_pattern(r):
    seed_ab(r)
    assert sorted_run(r, "GB('KeysOnlyReader').run('a*')") == [["a1", "a2", "ah"], []]
    assert sorted_run(r, "GB('KeysOnlyReader', 'b*').run()") == [["b1"], []]


def test_keysonlyreader_count(r):
    r.execute_command("DEBUG", "POPULATE", "300", "c")
    for count in [1, 7, 1000]:
        results, errors = pyexecute(r, f"GB('KeysOnlyReader').run('c:*', count={count})")
        assert errors == []
        assert sorted(results) == sorted(f"c:{i}" for i in range(300)), count


def test_keysonlyreader_noscan(r):
    seed_ab(r)
    assert pyexecute(r, "GB('KeysOnlyReader').run('a1', noScan=True)") == [["a1"], []]
    assert pyexecute(r, "GB('KeysOnlyReader').run('zz', noScan=True)") == [[], []]
    assert pyexecute(r, "GB('KeysOnlyReader').run('a*', noScan=True)") == [[], []]


def test_keysonlyreader_pattern_generator(r):
    seed_ab(r)
    assert sorted_run(r, "GB('KeysOnlyReader').run(patternGenerator=lambda: ('b*', False))") == [["b1"], []]
    # overrides both the pattern and noScan
    assert pyexecute(r, "GB('KeysOnlyReader').run('a*', patternGenerator=lambda: ('a2', True))") == [
        ["a2"], []]
    assert pyexecute(r, "GB('KeysOnlyReader').run('a2', noScan=True, patternGenerator=lambda: ('b*', False))") == [
        ["b1"], []]


def test_keysonlyreader_bad_count_is_scan_error(r):
    seed_ab(r)
    results, errors = pyexecute(r, "GB('KeysOnlyReader').run(count='abc')")
    assert results == []
    assert len(errors) == 1 and "ERR value is not an integer or out of range" in errors[0], errors


def test_keysonlyreader_pattern_generator_not_callable(r):
    seed_ab(r)
    results, errors = pyexecute(r, "GB('KeysOnlyReader').run(patternGenerator='x')")
    assert results == []
    assert len(errors) == 1 and "'str' object is not callable" in errors[0], errors


# ------------------------------------------------------------------------------------------
# StreamReader (run)
# ------------------------------------------------------------------------------------------


def seed_stream(r):
    r.xadd("s", {"f": "v"}, id="1-1")
    r.xadd("s", {"a": "b", "c": "d"}, id="2-1")
    r.xadd("s", {"x": "y"}, id="3-0")


def test_streamreader_reads_all_entries_in_order(r):
    seed_stream(r)
    assert pyexecute(r, "GB('StreamReader').run('s')") == [[
        "{'key': 's', 'id': '1-1', 'value': {'f': 'v'}}",
        "{'key': 's', 'id': '2-1', 'value': {'a': 'b', 'c': 'd'}}",
        "{'key': 's', 'id': '3-0', 'value': {'x': 'y'}}",
    ], []]


def test_streamreader_from_id(r):
    seed_stream(r)
    assert pyexecute(r, "GB('StreamReader').map(lambda e: e['id']).run('s', fromId='1-1')") == [
        ["2-1", "3-0"], []]
    assert pyexecute(r, "GB('StreamReader').map(lambda e: e['id']).run('s', fromId='0-0')") == [
        ["1-1", "2-1", "3-0"], []]
    assert pyexecute(r, "GB('StreamReader').map(lambda e: e['id']).run('s', fromId='3-0')") == [[], []]


def test_streamreader_record_field_types(r):
    seed_stream(r)
    script = "GB('StreamReader').map(lambda e: [type(e).__name__, list(e.keys()), type(e['value']).__name__]).run('s', fromId='2-1')"
    assert pyexecute(r, script) == [["['dict', ['key', 'id', 'value'], 'dict']"], []]


def test_streamreader_from_id_must_be_string(raw):
    raw.call("XADD", "s", "1-1", "f", "v")
    assert_gears_error(raw, "GB('StreamReader').run('s', fromId=1)", "fromId argument must be a string")


def test_streamreader_bad_from_id_is_xread_error(r):
    seed_stream(r)
    assert pyexecute(r, "GB('StreamReader').run('s', fromId='bad')") == [
        [], ["ERR Invalid stream ID specified as stream command argument"]]


# ------------------------------------------------------------------------------------------
# PythonReader, ShardsIDReader, CommandReader
# ------------------------------------------------------------------------------------------


def test_pythonreader_generator_function(r):
    script = "def gen():\n    for i in range(3):\n        yield {'i': i}\nGB('PythonReader').run(gen)\n"
    assert pyexecute(r, script) == [["{'i': 0}", "{'i': 1}", "{'i': 2}"], []]


def test_pythonreader_called_once_without_arguments(r):
    script = (
        "calls = []\n"
        "def gen(*args):\n"
        "    calls.append(args)\n"
        "    yield 'x'\n"
        "GB('PythonReader').map(lambda x: repr(calls)).run(gen)\n"
    )
    assert pyexecute(r, script) == [["[()]"], []]


def test_pythonreader_non_iterator_is_one_record(r):
    assert pyexecute(r, "GB('PythonReader').run(lambda: [1, 2])") == [["[1, 2]"], []]
    assert pyexecute(r, "GB('PythonReader').run(lambda: None)") == [["None"], []]


def test_pythonreader_generator_error_ends_reader(r):
    script = (
        "def gen():\n"
        "    yield 1\n"
        "    flat_error('gen failed')\n"
        "    yield 2\n"
        "GB('PythonReader').run(gen)\n"
    )
    assert pyexecute(r, script) == [["1"], ["gen failed"]]


def test_pythonreader_default_arg(raw):
    # The default defaultArg '*' is not a function
    assert_gears_error(raw, "GB('PythonReader').run()", "pyreader argument must be a function")
    assert_gears_error(raw, "GB('PythonReader').run(5)", "pyreader argument must be a function")
    assert_gears_error(raw, "GB('PythonReader').run('gen')", "pyreader argument must be a function")


def test_pythonreader_function_not_given(raw):
    assert_gears_error(raw, "GB('PythonReader', None).run()", "python reader function is not given")


def test_pythonreader_default_arg_function(r):
    assert pyexecute(r, "GB('PythonReader', lambda: iter([3, 4])).run()") == [["3", "4"], []]


def test_shardsidreader(r, raw):
    assert pyexecute(r, "GB('ShardsIDReader').run()") == [["1"], []]
    assert pyexecute(r, "GB('ShardsIDReader').run('ignored')") == [["1"], []]
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: type(x).__name__).run()") == [
        [b"str"], []]


def test_commandreader_cannot_run(raw):
    assert_gears_error(raw, "GB('CommandReader').run()", "Given reader do not support run or not exists")


# ------------------------------------------------------------------------------------------
# run() kwargs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader_script", [
    "GB('ShardsIDReader').run({kw})",
    "GB('PythonReader').run(lambda: iter(['1']), {kw})",
    "GB('KeysReader').map(lambda r: r['value']).run('k', {kw})",
    "GB('StreamReader').map(lambda r: r['value']['f']).run('s', {kw})",
])
@pytest.mark.parametrize("kw", ["mode='async'", "mode='async_local'"])
def test_run_accepted_kwargs(r, reader_script, kw):
    r.set("k", "1")
    r.xadd("s", {"f": "1"})
    assert pyexecute(r, reader_script.format(kw=kw)) == [["1"], []]


@pytest.mark.parametrize("reader_script", [
    "GB('ShardsIDReader').run({kw})",
    "GB('PythonReader').run(lambda: iter(['1']), {kw})",
    "GB('KeysReader').map(lambda r: r['value']).run('k', {kw})",
    "GB('StreamReader').map(lambda r: r['value']['f']).run('s', {kw})",
])
@pytest.mark.parametrize("kw, name", [("someUnknownKwarg=5", "someUnknownKwarg"), ("x=1, y=[2]", "x")])
def test_run_refuses_unknown_kwargs(raw, reader_script, kw, name):
    # Unknown keyword arguments raise TypeError (tests/test_rg12_compat.py has more).
    text = script_error(raw, reader_script.format(kw=kw))
    assert text.endswith(tb_end(f"TypeError: run() got an unexpected keyword argument '{name}'")), text


@pytest.mark.parametrize("reader", ["ShardsIDReader", "KeysReader", "PythonReader"])
@pytest.mark.parametrize("mode", ["'sync'", "'bogus'", "''"])
def test_run_unknown_mode(raw, reader, mode):
    arg = "lambda: iter([1])" if reader == "PythonReader" else "'*'"
    assert_gears_error(raw, f"GB({reader!r}).run({arg}, mode={mode})", "unknown execution mode")


@pytest.mark.parametrize("mode", ["1", "None", "b'async'"])
def test_run_mode_must_be_string(raw, mode):
    assert_gears_error(raw, f"GB('ShardsIDReader').run(mode={mode})", "execution mode must be a string")


def test_run_convert_to_str_false(raw):
    assert raw.call("RG.PYEXECUTE", "GB('PythonReader').run(lambda: iter([1, 'a', 2.5, [1, 'b']]), convertToStr=False)") == [
        [1, b"a", b"2.500000", [1, b"b"]], []]


def test_run_collect_false(r):
    assert pyexecute(r, "GB('PythonReader').run(lambda: iter([1, 2]), collect=False)") == [["1", "2"], []]


def test_run_positional_convert_and_collect(r):
    assert pyexecute(r, "GB('ShardsIDReader').run(None, True, True)") == [["1"], []]
