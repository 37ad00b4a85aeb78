"""Error texts (docs/commands.md#python-error-texts), errors inside executions
(docs/commands.md#the-results-errors-reply), and refused contexts (docs/commands.md#rgpyexecute, first error)."""

import pytest
import redis

from conftest import BLOCK_ERR, Error, Status, dump_executions, error_text, pyexecute

TB_START = "['Traceback (most recent call last):\\n'"


def test_syntax_error_format(raw):
    res = raw.call("RG.PYEXECUTE", "1 +")
    assert type(res) is Error
    assert res.startswith("Error type: <class 'SyntaxError'>, Value: invalid syntax"), res
    res = raw.call("RG.PYEXECUTE", "def f(:\n  pass")
    assert type(res) is Error
    assert res.startswith("Error type: <class 'SyntaxError'>, Value: "), res
    assert raw.call("PING") == Status("PONG")


def test_name_error_traceback_format(raw):
    res = raw.call("RG.PYEXECUTE", "x")
    assert type(res) is Error
    assert res.startswith(TB_START), res
    assert res.endswith("\"NameError: name 'x' is not defined\\n\"]"), res
    assert "'  File \"<string>\", line 1, in <module>\\n'" in res, res
    # The whole text as CPython's traceback.format_exception would give it
    assert res == (
        "['Traceback (most recent call last):\\n', "
        "'  File \"<string>\", line 1, in <module>\\n', "
        "\"NameError: name 'x' is not defined\\n\"]"
    )


def test_exception_in_script_body(r, raw):
    res = raw.call("RG.PYEXECUTE", "1/0")
    assert type(res) is Error and res.startswith(TB_START) and "ZeroDivisionError" in res, res
    res = raw.call("RG.PYEXECUTE", "a = 1\nb = 2\nraise ValueError('boom here')\n")
    assert type(res) is Error, res
    assert "line 3, in <module>" in res
    assert res.endswith("'ValueError: boom here\\n']"), res
    assert r.ping()


def test_exception_raised_in_function_has_frames(raw):
    res = raw.call("RG.PYEXECUTE", "def f():\n    return undefined_name\nf()\n")
    assert type(res) is Error, res
    assert "line 3, in <module>" in res and "line 2, in f" in res, res
    assert res.endswith("\"NameError: name 'undefined_name' is not defined\\n\"]"), res


def test_attribute_and_call_error_texts(raw):
    res = raw.call("RG.PYEXECUTE", "class T:\n    pass\nT().a\n")
    assert res.endswith("\"AttributeError: 'T' object has no attribute 'a'\\n\"]"), res
    res = raw.call("RG.PYEXECUTE", "class T:\n    pass\nT()()\n")
    assert res.endswith("\"TypeError: 'T' object is not callable\\n\"]"), res


def test_exception_in_step_callback_goes_to_errors(raw):
    res = raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda r: 1/0).run()")
    assert isinstance(res, list) and len(res) == 2, res
    results, errors = res
    assert results == []
    assert len(errors) == 1
    err = errors[0]
    assert type(err) is bytes, err  # a bulk string, never an error reply
    text = err.decode()
    assert text.startswith(TB_START), text
    assert "line 1, in <lambda>" in text
    assert "ZeroDivisionError" in text
    assert raw.call("PING") == Status("PONG")


def test_errors_and_results_together(r):
    script = "GB('PythonReader').map(lambda x: 6 // (x - 2) + 10).run(lambda: iter([1, 2, 3]))"
    results, errors = pyexecute(r, script)
    assert results[0] == "4"
    assert set(results) <= {"4", "16"}
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0]


def test_failing_map_over_many_keys_still_ends(r):
    p = r.pipeline(transaction=False)
    for i in range(200):
        p.set(f"k{i}", i)
    p.execute()
    results, errors = pyexecute(r, "GB().map(lambda r: r['nokey']).run()")
    assert results == []
    assert 1 <= len(errors) <= 200
    assert all("KeyError" in e for e in errors)


def test_error_skips_later_steps(r):
    script = (
        "def gen():\n"
        "    yield 0\n"
        "GB('PythonReader').map(lambda x: 1/x).map(lambda x: execute('SET', 'reached', '1')).run(gen)\n"
    )
    results, errors = pyexecute(r, script)
    assert results == [] and len(errors) == 1
    assert r.exists("reached") == 0


def test_generator_raises(r):
    script = (
        "def gen():\n"
        "    yield 1\n"
        "    raise ValueError('reader boom')\n"
        "GB('PythonReader').run(gen)\n"
    )
    results, errors = pyexecute(r, script)
    assert results == ["1"]
    assert len(errors) == 1
    assert "ValueError" in errors[0] and "reader boom" in errors[0]


def test_callback_wrong_arity_uses_plain_format(r):
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda a, b: 1).run()")
    assert results == []
    assert len(errors) == 1
    assert errors[0].startswith("Error type: <class 'TypeError'>, Value: "), errors[0]


def test_flat_error(r):
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda r: flat_error('plain text')).run()")
    assert results == [] and errors == ["plain text"]
    assert error_text(r, "RG.PYEXECUTE", "flat_error('top level flat')") == "top level flat"


def test_unknown_command_raises_gears_error(r):
    msg = error_text(r, "RG.PYEXECUTE", "execute('NOSUCHCMD')")
    assert msg.startswith(TB_START), msg
    assert "gears.error: ERR unknown command 'NOSUCHCMD'" in msg, msg
    assert r.ping()


def test_execute_error_reply_raises_gears_error(r):
    msg = error_text(r, "RG.PYEXECUTE", "execute('GET')")
    assert msg.endswith("\"gears.error: ERR wrong number of arguments for 'get' command\\n\"]"), msg
    r.set("str", "v")
    msg = error_text(r, "RG.PYEXECUTE", "execute('LPUSH', 'str', 'x')")
    assert "gears.error: WRONGTYPE Operation against a key holding the wrong kind of value" in msg, msg
    # The exception can be caught by the script and has type gears.error
    script = (
        "try:\n"
        "    execute('GET')\n"
        "except Exception as e:\n"
        "    execute('SET', 'caught', type(e).__module__ + '.' + type(e).__name__ + '|' + str(e))\n"
    )
    assert pyexecute(r, script) == "OK"
    assert r.get("caught") == "gears.error|ERR wrong number of arguments for 'get' command"
    assert r.ping()


def test_error_in_step_from_execute(r):
    results, errors = pyexecute(r, "GB('ShardsIDReader').map(lambda r: execute('NOSUCHCMD')).run()")
    assert results == [] and len(errors) == 1
    assert "gears.error: ERR unknown command 'NOSUCHCMD'" in errors[0], errors[0]


def test_refused_inside_multi(server, r):
    raw = server.raw()
    assert raw.call("MULTI") == Status("OK")
    queued = raw.call("RG.PYEXECUTE", "execute('INCR','mx')")
    exec_reply = raw.call("EXEC")
    texts = []
    for x in (queued, exec_reply):
        if isinstance(x, list):
            texts += [str(e) for e in x]
        elif x is not None:
            texts.append(x.decode() if isinstance(x, bytes) else str(x))
    assert any(BLOCK_ERR in t for t in texts), (queued, exec_reply)
    assert r.exists("mx") == 0
    assert dump_executions(r) == []
    assert r.ping()


def test_refused_inside_multi_redis_py(r):
    p = r.pipeline(transaction=True)
    p.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda r: execute('INCR','mx')).run()")
    try:
        out = p.execute(raise_on_error=False)
        texts = [str(x) for x in out]
    except redis.ResponseError as e:  # refused at queue time -> EXECABORT
        texts = [str(e)]
    assert any(BLOCK_ERR in t for t in texts), texts
    assert r.exists("mx") == 0
    assert dump_executions(r) == []


def test_refused_from_lua(r, raw):
    msg = error_text(r, "EVAL", "return redis.call('RG.PYEXECUTE', \"execute('INCR','mx')\")", 0)
    assert BLOCK_ERR in msg, msg
    res = raw.call("EVAL", "return redis.pcall('RG.PYEXECUTE', \"execute('INCR','mx')\")", 0)
    assert type(res) is Error and BLOCK_ERR in res, res
    res = raw.call("EVAL", "return redis.pcall('RG.PYEXECUTE', \"GB('ShardsIDReader').run()\", 'UNBLOCKING')", 0)
    assert type(res) is Error and BLOCK_ERR in res, res
    assert r.exists("mx") == 0
    assert dump_executions(r) == []
    assert r.ping()


def test_refused_from_execute(r):
    msg = error_text(r, "RG.PYEXECUTE", "execute('RG.PYEXECUTE', \"execute('INCR','mx')\")")
    assert "blocking is not allowed" in msg, msg
    results, errors = pyexecute(
        r, "GB('ShardsIDReader').map(lambda x: execute('RG.PYEXECUTE', \"execute('INCR','mx')\")).run()")
    assert results == [] and len(errors) == 1 and "blocking is not allowed" in errors[0], errors
    assert r.exists("mx") == 0
    assert r.ping()


SCRIPTS_THAT_MUST_FAIL = [
    "1 +", "x", "1/0", "raise SystemExit(1)", "raise SystemExit()", "raise KeyboardInterrupt()",
    "import sys\nsys.exit(3)", "exit()", "quit()", "def f(): f()\nf()", "raise BaseException('b')",
    "raise GeneratorExit()", "GB('NoSuchReader')", "GB(1)", "GB().run(1)", "GB('PythonReader').run()",
    "GB('PythonReader').run('*')",
]


@pytest.mark.parametrize("script", SCRIPTS_THAT_MUST_FAIL)
def test_failing_script_gives_error_and_server_survives(r, script):
    try:
        res = pyexecute(r, script)
    except redis.ResponseError:
        pass
    else:
        raise AssertionError(f"script {script!r} should fail with an error reply, got {res!r}")
    assert r.ping()
    assert pyexecute(r, "GB('ShardsIDReader').run()") == [["1"], []]


def test_system_exit_text(raw):
    res = raw.call("RG.PYEXECUTE", "raise SystemExit(1)")
    assert type(res) is Error, res
    assert res.startswith(TB_START) and res.endswith("'SystemExit: 1\\n']"), res


def test_gears_error_texts_of_builder(r):
    assert "The given reader does not exists" in error_text(r, "RG.PYEXECUTE", "GB('NoSuchReader')")
    assert "reader argument must be a string" in error_text(r, "RG.PYEXECUTE", "GB(1)")
    assert "pyreader argument must be a function" in error_text(r, "RG.PYEXECUTE", "GB('PythonReader').run()")
    assert "regex argument must be a string" in error_text(r, "RG.PYEXECUTE", "GB().run(1)")


# Readability (docs/python-api.md, "Error texts") ---------------------------------------------


def test_no_shim_frames_in_tracebacks(raw):
    # The check raising gears.error runs in the module's own Python; only the script's frame shows.
    res = raw.call("RG.PYEXECUTE", "x = 1\nGB().map(1)\n")
    assert res == (
        "['Traceback (most recent call last):\\n', "
        "'  File \"<string>\", line 2, in <module>\\n', "
        "'gears.error: map argument must be a function\\n']"
    ), res
    # The sandbox stand-ins are shim modules too.
    res = raw.call("RG.PYEXECUTE", "import os\nos.system('true')\n")
    assert res == (
        "['Traceback (most recent call last):\\n', "
        "'  File \"<string>\", line 2, in <module>\\n', "
        "'OSError: [Errno 38] system is not available in the rustgears sandbox\\n']"
    ), res
    for script in ("GB('NoSuchReader')", "GB().run(1)", "log(1)", "GB().limit('x')", "import socket"):
        res = raw.call("RG.PYEXECUTE", script)
        assert type(res) is Error and res.startswith(TB_START), res
        assert 'File \\"gears' not in res and "File \"gears" not in res and "find_spec" not in res, res


def test_no_shim_frames_in_step_errors(r):
    script = "def boom(r):\n    raise ValueError('boom')\nGB('ShardsIDReader').map(boom).run()\n"
    results, errors = pyexecute(r, script)
    assert results == [] and len(errors) == 1
    assert errors[0] == (
        "['Traceback (most recent call last):\\n', "
        "'  File \"<string>\", line 2, in boom\\n', "
        "'ValueError: boom\\n']"
    ), errors[0]


def test_wrong_arity_callback_gives_its_line(r):
    script = (
        "x = 1\n"
        "\n"
        "GB('ShardsIDReader').map(lambda a, b: 1).run()\n"
    )
    results, errors = pyexecute(r, script)
    assert results == []
    assert errors == [
        "Error type: <class 'TypeError'>, Value: <lambda>() missing 1 required positional argument: 'b' "
        "(callback defined at <string>, line 3)"
    ], errors
    script = (
        "def extract(r):\n"
        "    return r\n"
        "def reduce(k, a):\n"
        "    return a\n"
        "GB('ShardsIDReader').groupby(extract, reduce).run()\n"
    )
    results, errors = pyexecute(r, script)
    assert errors == [
        "Error type: <class 'TypeError'>, Value: reduce() takes 2 positional arguments but 3 were given "
        "(callback defined at <string>, line 3)"
    ], errors
    results, errors = pyexecute(r, "\nGB('PythonReader').run(lambda x: iter([x]))\n")
    assert errors == [
        "Error type: <class 'TypeError'>, Value: <lambda>() missing 1 required positional argument: 'x' "
        "(callback defined at <string>, line 2)"
    ], errors


@pytest.mark.parametrize("script, detail", [
    ("1a", "invalid decimal literal"),
    ("x = 0x", "invalid hexadecimal literal"),
    ("def f(:\n  pass", "'(' was never closed"),
    ("if True\n  x = 1", "expected ':'"),
    ("print(1))", "unmatched ')'"),
    ("x = 1 if 2", "expected 'else' after 'if' expression"),
    ("import", "Expected one or more names after 'import'"),
])
def test_generic_syntax_errors_say_invalid_syntax(raw, script, detail):
    res = raw.call("RG.PYEXECUTE", script)
    assert type(res) is Error
    assert res.startswith(f"Error type: <class 'SyntaxError'>, Value: invalid syntax: {detail} (<string>, line "), res


@pytest.mark.parametrize("script, text", [
    # CPython 3.7 had texts of its own for these: they stay as the parser words them.
    ("return 1", "Error type: <class 'SyntaxError'>, Value: 'return' outside function (<string>, line 1)"),
    ("'abc", "Error type: <class 'SyntaxError'>, Value: unterminated string literal"),
    (" 1", "Error type: <class 'IndentationError'>, Value: unexpected indentation (<string>, line 1)"),
    ("f(x=1, 2)", "Error type: <class 'SyntaxError'>, Value: positional argument follows keyword argument"),
    ("1 +", "Error type: <class 'SyntaxError'>, Value: invalid syntax (<string>, line 1)"),
])
def test_specific_syntax_errors_keep_their_text(raw, script, text):
    res = raw.call("RG.PYEXECUTE", script)
    assert type(res) is Error and res.startswith(text), res


def test_syntax_error_from_compile_in_a_script(r):
    script = (
        "try:\n"
        "    compile('1a', 'snippet', 'exec')\n"
        "except SyntaxError as e:\n"
        "    execute('SET', 'msg', str(e))\n"
    )
    assert pyexecute(r, script) == "OK"
    assert r.get("msg") == "invalid syntax: invalid decimal literal (snippet, line 1)"


def test_notes_are_shown(r, raw):
    res = raw.call("RG.PYEXECUTE", "e = ValueError('v')\ne.add_note('some context')\nraise e\n")
    assert type(res) is Error and res.endswith("'ValueError: v\\n', 'some context\\n']"), res
