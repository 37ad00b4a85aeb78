"""Sandbox (no file system, network, subprocess, environment), print() to the log, and clean
per-script globals/builtins (docs/python-api.md#script-environment, docs/sandbox.md)."""

import os
import uuid

import pytest
import redis

from conftest import error_text, pyexecute


def must_fail(r, script):
    """The script must end in an error reply, and the server must stay up."""
    try:
        res = pyexecute(r, script)
    except redis.ResponseError as e:
        assert r.ping()
        return str(e)
    raise AssertionError(f"script should have failed, got {res!r}:\n{script}")


def test_open_fails(r):
    msg = must_fail(r, "open('/etc/passwd').read()")
    assert "root:" not in msg
    msg = must_fail(r, "execute('SET', 'leak', open('/etc/hostname').read())")
    assert r.exists("leak") == 0


def test_open_for_write_fails(r, server):
    target = os.path.join(server.dir, "written-by-script.txt")
    must_fail(r, f"f = open({target!r}, 'w')\nf.write('x')\nf.close()\n")
    assert not os.path.exists(target)


def test_io_module_file_access_fails(r):
    must_fail(r, "import io\nio.open('/etc/passwd').read()")
    must_fail(r, "import _io\n_io.FileIO('/etc/passwd').read()")


def test_os_file_access_fails(r):
    must_fail(r, "import os\nexecute('SET', 'ls', str(os.listdir('/')))")
    assert r.exists("ls") == 0
    must_fail(r, "import os\nos.getcwd()")
    must_fail(r, "import os\nfd = os.open('/etc/passwd', 0)\nos.read(fd, 100)")


def test_os_system_fails(r, server):
    target = os.path.join(server.dir, "touched-by-os-system")
    must_fail(r, f"import os\nrc = os.system('touch {target}')\nassert rc == 0\n")
    assert not os.path.exists(target)
    must_fail(r, f"import os\nos.popen('touch {target}').read()")
    assert not os.path.exists(target)


def test_no_environment_variables(r):
    script = (
        "try:\n"
        "    import os\n"
        "except ImportError:\n"
        "    os = None\n"
        "env = getattr(os, 'environ', {}) if os is not None else {}\n"
        "execute('SET', 'envcount', str(len(env)))\n"
        "execute('SET', 'home', str(env.get('HOME')) if hasattr(env, 'get') else 'None')\n"
    )
    try:
        pyexecute(r, script)
    except redis.ResponseError:
        pass  # a refused os module is fine too
    assert r.ping()
    if r.exists("envcount"):
        assert r.get("envcount") == "0"
        assert r.get("home") == "None"


def test_socket_fails(r, server):
    must_fail(
        r,
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        f"s.connect(('127.0.0.1', {server.port}))\n"
        "s.sendall(b'*3\\r\\n$3\\r\\nSET\\r\\n$4\\r\\nsock\\r\\n$1\\r\\n1\\r\\n')\n"
        "s.recv(100)\n",
    )
    assert r.exists("sock") == 0


def test_subprocess_fails(r, server):
    target = os.path.join(server.dir, "touched-by-subprocess")
    must_fail(r, f"import subprocess\nsubprocess.run(['touch', {target!r}])\n")
    must_fail(r, f"import subprocess\nsubprocess.Popen(['touch', {target!r}]).wait()\n")
    assert not os.path.exists(target)


def test_ctypes_cannot_call_libc(r):
    must_fail(r, "import ctypes\nctypes.CDLL(None).getpid()")


def test_filesystem_import_fails(r, server):
    path = os.path.join(server.dir, "evilmod.py")
    with open(path, "w") as f:
        f.write("import builtins\nbuiltins.EVIL = 1\n")
    must_fail(r, f"import sys\nsys.path.insert(0, {server.dir!r})\nimport evilmod\n")


PURE_MODULES = ["time", "json", "re", "math", "random", "datetime", "collections", "itertools",
                "functools", "copy", "traceback"]


@pytest.mark.parametrize("mod", PURE_MODULES)
def test_pure_module_importable(r, mod):
    assert pyexecute(r, f"import {mod}") == "OK"


def test_pure_modules_work(r):
    script = (
        "import json, math, re, itertools\n"
        "execute('SET', 'pure', json.dumps({'a': [1, 2]}) + '|' + str(math.floor(2.5)) + '|' + "
        "re.sub('b', 'c', 'abc') + '|' + str(len(list(itertools.permutations([1, 2, 3])))))\n"
    )
    assert pyexecute(r, script) == "OK"
    assert r.get("pure") == '{"a": [1, 2]}|2|acc|6'


def test_print_goes_to_log(r, server):
    marker = f"hello-from-script-{uuid.uuid4().hex}"
    assert pyexecute(r, f"print({marker!r})") == "OK"
    server.wait_log(marker)
    marker2 = f"hello-from-step-{uuid.uuid4().hex}"
    assert pyexecute(r, f"GB('ShardsIDReader').foreach(lambda x: print({marker2!r})).run()") == [["1"], []]
    server.wait_log(marker2)


def test_print_variants_do_not_fail(r):
    assert pyexecute(r, "print()\nprint('a', 1, None, sep='-', end='!\\n')\nprint('x', flush=True)") == "OK"


def test_builtins_clean_between_scripts(r):
    try:
        pyexecute(r, "import builtins\nbuiltins.zz = 42")
    except redis.ResponseError:
        pass  # refusing to modify builtins is fine too
    msg = error_text(r, "RG.PYEXECUTE", "execute('SET', 'zz', str(zz))")
    assert "name 'zz' is not defined" in msg, msg
    assert r.exists("zz") == 0


def test_builtins_replaced_do_not_leak(r):
    try:
        pyexecute(r, "import builtins\nbuiltins.len = lambda x: 12345")
    except redis.ResponseError:
        pass
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: len('abc')).run()") == [["3"], []]
    for attack in ("__builtins__['abs'] = lambda x: 'hacked'", "__builtins__.abs = lambda x: 'hacked'"):
        try:
            pyexecute(r, attack)
        except redis.ResponseError:
            pass
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda x: abs(-2)).run()") == [["2"], []]


def test_globals_clean_between_scripts(r):
    assert pyexecute(r, "g = 1") == "OK"
    msg = error_text(r, "RG.PYEXECUTE", "execute('SET', 'gk', str(g))")
    assert "name 'g' is not defined" in msg, msg
    assert r.exists("gk") == 0
    # identical code does not share globals either
    script = (
        "try:\n"
        "    counter\n"
        "except NameError:\n"
        "    counter = 0\n"
        "counter += 1\n"
        "execute('RPUSH', 'counters', str(counter))\n"
    )
    assert pyexecute(r, script) == "OK"
    assert pyexecute(r, script) == "OK"
    assert r.lrange("counters", 0, -1) == ["1", "1"]


def test_globals_shared_within_a_script(r):
    script = (
        "total = 0\n"
        "def add(x):\n"
        "    global total\n"
        "    total += x\n"
        "    return total\n"
        "GB('PythonReader').map(add).run(lambda: iter([1, 2, 3]))\n"
    )
    assert pyexecute(r, script) == [["1", "3", "6"], []]


def test_name_is_not_main(r):
    script = (
        "if __name__ == '__main__':\n"
        "    execute('SET', 'mainran', '1')\n"
        "execute('SET', 'nm', __name__)\n"
    )
    assert pyexecute(r, script) == "OK"
    assert r.get("nm") == "not_main"
    assert r.exists("mainran") == 0
    assert pyexecute(r, "GB('ShardsIDReader').map(lambda r: __name__).run()") == [["not_main"], []]
