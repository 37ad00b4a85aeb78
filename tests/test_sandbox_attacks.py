"""Sandbox attack corpus: scripts that try to escape the sandbox of RG.PYEXECUTE, or to crash,
wedge or tamper with the server, with the outcome each one must have (docs/sandbox.md,
docs/commands.md#rgpyexecute, #python-error-texts, #load-arguments).

Every case is one parametrized test with its own redis-server (ExecutionThreads 1 unless the
case says otherwise, so that a script and the script after it share one interpreter). For each:
  1. a canary key is set,
  2. the case's script(s) run through RG.PYEXECUTE on a raw connection with a deadline,
  3. the case's check asserts the specific outcome: an error reply carrying a given Python
     exception, or a value the script stored that proves it got nothing (os.environ == {}),
  4. the server answers PING, the canary is unchanged, and a new script still runs.

Cases with `then=` are cross-script: the first script tampers with shared interpreter state and
the second ("the victim") must not be affected. Keys under `attack:` are cleared before it runs.

A case that fails here is a finding (an escape, a crash, a wedged worker or state leaking between
scripts); do not weaken a case to make it pass.
"""

import os
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from conftest import Error, RawConnection

RESULT = "attack:result"
SPY = "attack:spy"
EVIL = "attack:evil"
# A reply must arrive within this; a script that never gets an answer is a finding.
REPLY_DEADLINE = 90.0
# Python exception replies are formatted tracebacks (docs/commands.md#python-error-texts): a list repr, or "Error type: ...".
PANIC_TEXT = "ended without a reply"


@dataclass
class Case:
    name: str
    script: str
    check: Callable
    then: Optional[str] = None
    args: tuple = ("ExecutionThreads", "1")
    needs_file: bool = False
    needs_so: bool = False
    deadline: float = REPLY_DEADLINE


class Ctx:
    """What a check can look at."""

    def __init__(self, server, conn, tmp, reply, first_reply):
        self.server = server
        self.conn = conn
        self.tmp = tmp
        self.reply = reply
        self.first_reply = first_reply

    def get(self, key):
        return self.conn.call("GET", key)

    def exists(self, key):
        return self.conn.call("EXISTS", key) == 1


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def python_error_text(reply):
    assert isinstance(reply, Error), f"expected an error reply (a Python exception), got {reply!r}"
    text = str(reply)
    assert PANIC_TEXT not in text, f"the interpreter panicked instead of raising a Python exception: {text!r}"
    assert text.startswith("['Traceback") or text.startswith("Error type:"), \
        f"not a formatted Python exception: {text!r}"
    return text


def raises(*needles):
    """The script fails with a Python exception whose text contains every needle."""

    def check(ctx):
        text = python_error_text(ctx.reply)
        for n in needles:
            assert n in text, f"expected {n!r} in the error, got {text!r}"

    check.__doc__ = f"raises {needles}"
    return check


def any_python_error(ctx):
    """Refused with some Python exception (the type is the implementation's choice)."""
    python_error_text(ctx.reply)


def result(expected):
    """The script ran and stored `expected` (str) under RESULT."""

    def check(ctx):
        assert not isinstance(ctx.reply, Error), f"script failed: {ctx.reply!r}"
        got = ctx.get(RESULT)
        assert got is not None, "the script did not store its result"
        assert got.decode() == expected, f"expected {expected!r}, got {got.decode()!r}"

    return check


def result_or_raises(expected, *needles):
    """Either outcome proves nothing was reached (used where a module may or may not exist)."""

    def check(ctx):
        if isinstance(ctx.reply, Error):
            raises(*needles)(ctx)
        else:
            result(expected)(ctx)

    return check


def no_key(key):
    def check(ctx):
        assert not ctx.exists(key), f"key {key!r} was written: {ctx.get(key)!r}"

    return check


def no_file(name):
    def check(ctx):
        path = os.path.join(ctx.tmp, name)
        assert not os.path.exists(path), f"{path} was created by the script"

    return check


def reply_is(expected):
    def check(ctx):
        assert ctx.reply == expected, f"expected {expected!r}, got {ctx.reply!r}"

    return check


def step_errors_contain(*alternatives):
    """[results, errors] with one error containing one of the alternatives."""

    def check(ctx):
        assert isinstance(ctx.reply, list) and len(ctx.reply) == 2, f"expected [results, errors], got {ctx.reply!r}"
        errors = [e.decode() if isinstance(e, bytes) else str(e) for e in ctx.reply[1]]
        assert errors, f"expected an error, got {ctx.reply!r}"
        assert any(a in e for e in errors for a in alternatives), errors

    return check


def error_contains(*alternatives):
    def check(ctx):
        assert isinstance(ctx.reply, Error), f"expected an error reply, got {ctx.reply!r}"
        assert any(a in str(ctx.reply) for a in alternatives), ctx.reply

    return check


def all_of(*checks):
    def check(ctx):
        for c in checks:
            c(ctx)

    return check


# ----------------------------------------------------------------------------------------------
# Script fragments
# ----------------------------------------------------------------------------------------------

EVIL_MODULE = (
    "import _redisgears\n"
    f"_redisgears.execute('SET', {EVIL!r}, 'evil module ran')\n"
    "X = 42\n"
)

EVIL_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void pwn(void) {
    FILE *f = fopen(PWNED_PATH, "w");
    if (f) { fputs("native code ran inside redis-server\n", f); fclose(f); }
}
"""


def store(expr):
    return f"execute('SET', {RESULT!r}, {expr})\n"


# Bytecode built from the interpreter's own opcode table, so a renumbering does not defuse it.
CRAFT_PRELUDE = (
    "import opcode\n"
    "op = opcode.opmap\n"
    "def bc(*pairs):\n"
    "    return bytes([x for name, arg in pairs for x in (op[name], arg)])\n"
)

# ----------------------------------------------------------------------------------------------
# The corpus
# ----------------------------------------------------------------------------------------------

CORPUS = [
    # --- file system -------------------------------------------------------------------------
    Case("open_read", "execute('SET', 'attack:leak', open('/etc/passwd').read())\n",
         all_of(raises("UnsupportedOperation"), no_key("attack:leak"))),
    Case("open_write", "f = open('{tmp}/written', 'w')\nf.write('x')\nf.close()\n",
         all_of(raises("UnsupportedOperation"), no_file("written"))),
    Case("io_open", "import io\nio.open('/etc/passwd').read()\n", raises("UnsupportedOperation")),
    Case("_io_open", "import _io\n_io.open('/etc/passwd', 'rb').read()\n", raises("UnsupportedOperation")),
    Case("_io_open_code", "import _io\n_io.open_code('/etc/passwd').read()\n", raises("UnsupportedOperation")),
    Case("io_FileIO", "import io\nio.FileIO('/etc/passwd').read()\n", raises("TypeError")),
    Case("_io_FileIO", "import _io\n_io.FileIO('/etc/passwd').read()\n",
         raises("AttributeError", "FileIO")),
    Case("pathlib", "import pathlib\npathlib.Path('/etc/passwd').read_text()\n",
         raises("ModuleNotFoundError", "pathlib")),
    Case("linecache_getline", store("repr(__import__('linecache').getline('/etc/passwd', 1))"),
         result("''")),
    Case("tokenize_open", "import tokenize\ntokenize.open('/etc/passwd').read()\n",
         raises("UnsupportedOperation")),
    Case("os_listdir", store("repr(__import__('os').listdir('/'))"),
         all_of(raises("OSError", "listdir is not available"), no_key(RESULT))),
    Case("os_open_read", "import os\nfd = os.open('/etc/passwd', os.O_RDONLY)\nos.read(fd, 100)\n",
         raises("OSError", "open is not available")),
    Case("os_stat", "import os\nos.stat('/etc/passwd')\n", raises("OSError", "stat is not available")),
    Case("os_getcwd", "import os\nos.getcwd()\n", raises("OSError", "getcwd is not available")),
    Case("loader_get_data",
         "import _frozen_importlib_external as e\n"
         "execute('SET', 'attack:leak', e.SourceFileLoader('x', '{tmp}/evilmod.py').get_data('{tmp}/evilmod.py'))\n",
         all_of(raises("UnsupportedOperation"), no_key("attack:leak")), needs_file=True),
    # --- network -----------------------------------------------------------------------------
    Case("socket", "import socket\ns = socket.create_connection(('127.0.0.1', {port}))\n",
         raises("ModuleNotFoundError", "'socket'")),
    Case("_socket", "import _socket\n_socket.socket()\n", raises("ModuleNotFoundError", "'_socket'")),
    # The asyncio stand-in has no sockets: its connections are refused where they start.
    Case("asyncio_open_connection",
         "import asyncio\n"
         "async def go(x):\n"
         "    try:\n"
         "        r, w = await asyncio.open_connection('127.0.0.1', {port})\n"
         "        w.write(b'SET attack:sock 1\\r\\n')\n"
         "        await w.drain()\n"
         "    except Exception as e:\n"
         f"        execute('SET', {RESULT!r}, type(e).__name__)\n"
         "GB('ShardsIDReader').map(go).run()\n",
         all_of(result("PermissionError"), no_key("attack:sock"))),
    Case("http_client", "import http.client\nhttp.client.HTTPConnection('127.0.0.1', {port}).request('GET', '/')\n",
         raises("ModuleNotFoundError", "'http'")),
    Case("urllib_request", "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/')\n",
         raises("ModuleNotFoundError", "'urllib.request' (not available in the rustgears sandbox)")),
    Case("ssl_select", "import select\n", raises("ModuleNotFoundError", "'select'")),
    # --- processes ---------------------------------------------------------------------------
    Case("subprocess", "import subprocess\nsubprocess.run(['touch', '{tmp}/spawned'])\n",
         all_of(raises("ModuleNotFoundError", "'subprocess'"), no_file("spawned"))),
    Case("_posixsubprocess", "import _posixsubprocess\n", raises("ModuleNotFoundError", "'_posixsubprocess'")),
    Case("os_system", "import os\nos.system('touch {tmp}/spawned')\n",
         all_of(raises("OSError", "system is not available"), no_file("spawned"))),
    Case("os_popen", "import os\nos.popen('touch {tmp}/spawned').read()\n",
         all_of(raises("OSError", "popen is not available"), no_file("spawned"))),
    Case("os_fork", "import os\nos.fork()\n", raises("AttributeError", "fork")),
    Case("os_execv", "import os\nos.execv('/bin/sh', ['sh', '-c', 'touch {tmp}/spawned'])\n",
         all_of(raises("OSError", "execv is not available"), no_file("spawned"))),
    Case("os_execl_spawnl", "import os\nos.execl('/bin/sh', 'sh', '-c', 'touch {tmp}/spawned')\n",
         all_of(raises("AttributeError", "execl"), no_file("spawned"))),
    Case("os_kill", "import os\nos.kill(1, 0)\n", raises("OSError", "kill is not available")),
    Case("posix_system", "import posix\nposix.system('touch {tmp}/spawned')\n",
         all_of(raises("OSError", "system is not available"), no_file("spawned"))),
    Case("pty", "import pty\npty.spawn('/bin/sh')\n", raises("ModuleNotFoundError", "'pty'")),
    # --- environment and host information ------------------------------------------------------
    Case("os_environ", store("repr(__import__('os').environ)"), result("{}")),
    Case("os_getenv", store("repr(__import__('os').getenv('PATH'))"), result("None")),
    Case("sys_argv",
         "import sys\n" + store("repr((sys.orig_argv, sys.argv, sys.path, sys.executable, sys.prefix))"),
         result("([], [], [], '', '')")),
    Case("sys_leaks_command_line",
         # The module arguments are part of redis-server's command line: none of sys may show them.
         "import sys\n"
         "found = []\n"
         "for name in dir(sys):\n"
         "    try:\n"
         "        if 'hunter2' in repr(getattr(sys, name)):\n"
         "            found.append(name)\n"
         "    except Exception:\n"
         "        pass\n" + store("repr(found)"),
         result("[]"), args=("ExecutionThreads", "1", "SandboxSecret", "hunter2-password")),
    Case("os_uname", "import os\nos.uname()\n", raises("OSError", "uname is not available")),
    # --- import machinery --------------------------------------------------------------------
    Case("importlib_import_module_os_system",
         "import importlib\nimportlib.import_module('os').system('touch {tmp}/spawned')\n",
         all_of(raises("OSError", "system is not available"), no_file("spawned"))),
    Case("importlib_util_spec_from_file_location",
         "import importlib.util\n"
         "spec = importlib.util.spec_from_file_location('evilmod', '{tmp}/evilmod.py')\n"
         "m = importlib.util.module_from_spec(spec)\n"
         "spec.loader.exec_module(m)\n",
         all_of(any_python_error, no_key(EVIL)), needs_file=True),
    Case("SourceFileLoader_load_module",
         "import _frozen_importlib_external as e\n"
         "e.SourceFileLoader('evilmod', '{tmp}/evilmod.py').load_module()\n",
         all_of(any_python_error, no_key(EVIL)), needs_file=True),
    Case("FileFinder_find_spec",
         "import _frozen_importlib_external as e\n"
         "spec = e.FileFinder('{tmp}', (e.SourceFileLoader, ['.py'])).find_spec('evilmod')\n"
         "spec.loader.exec_module(type(e)('evilmod'))\n",
         all_of(any_python_error, no_key(EVIL)), needs_file=True),
    Case("sys_path_insert_import",
         "import sys\nsys.path.insert(0, '{tmp}')\nimport evilmod\n",
         all_of(raises("ModuleNotFoundError", "evilmod"), no_key(EVIL)), needs_file=True),
    Case("meta_path_PathFinder",
         "import sys, _frozen_importlib_external as e\n"
         "sys.meta_path.append(e.PathFinder)\n"
         "sys.path_hooks.append(e.FileFinder.path_hook((e.SourceFileLoader, ['.py'])))\n"
         "sys.path.insert(0, '{tmp}')\n"
         "sys.path_importer_cache.clear()\n"
         "import evilmod\n",
         all_of(any_python_error, no_key(EVIL)), needs_file=True),
    Case("imp_create_dynamic_dlopen",
         # Without host_env nothing may dlopen a library (its constructor would run inside Redis).
         "import _imp\n"
         "class Spec:\n"
         "    name = 'evil'\n"
         "    origin = '{tmp}/evil.so'\n"
         "_imp.create_dynamic(Spec())\n",
         all_of(raises("ImportError"), no_file("pwned")), needs_so=True),
    Case("imp_create_builtin_hidden",
         "import _imp\n"
         "class Spec:\n"
         "    origin = None\n"
         "got = []\n"
         "for n in ('_socket', 'gc', '_signal', '_ctypes', '_posixsubprocess', '_interpreters', 'mmap', 'fcntl'):\n"
         "    Spec.name = n\n"
         "    got.append(_imp.create_builtin(Spec()))\n" + store("repr(got)"),
         result(repr([None] * 8))),
    Case("BuiltinImporter_via_subclasses",
         # The classic walk to the import machinery; it only finds compiled-in modules.
         "imp = [c for c in ().__class__.__mro__[1].__subclasses__() if c.__name__ == 'BuiltinImporter'][0]\n"
         "specs = [imp.find_spec(n) for n in ('_socket', '_posixsubprocess', 'posix', '_signal', '_ctypes', 'gc', 'marshal', 'zlib')]\n"
         + store("repr(specs)"),
         result(repr([None] * 8))),
    Case("BuiltinImporter_load_posix_system",
         "imp = [c for c in ().__class__.__mro__[1].__subclasses__() if c.__name__ == 'BuiltinImporter'][0]\n"
         "imp.load_module('posix').system('touch {tmp}/spawned')\n",
         all_of(any_python_error, no_file("spawned"))),
    Case("subclasses_walk_for_host_classes",
         "seen, todo, found = set(), [object], []\n"
         "while todo:\n"
         "    c = todo.pop()\n"
         "    if c in seen:\n"
         "        continue\n"
         "    seen.add(c)\n"
         "    try:\n"
         "        todo.extend(type.__subclasses__(c))\n"
         "    except TypeError:\n"
         "        pass\n"
         "    if c.__name__ in ('Popen', 'FileIO', '_wrap_close', 'socket', 'SocketIO', 'CDLL', 'Thread', 'Process', 'mmap'):\n"
         "        found.append(c.__module__ + '.' + c.__name__)\n" + store("repr(sorted(found))"),
         result("[]")),
    Case("globals_walk_to_import_socket",
         "def f():\n    pass\n"
         "b = f.__globals__['__builtins__']\n"
         "imp = b['__import__'] if isinstance(b, dict) else b.__import__\n"
         "imp('socket')\n",
         raises("ModuleNotFoundError", "'socket'")),
    Case("exec_with_empty_globals_reinserts_builtins",
         "exec(\"import os\\nos.system('touch {tmp}/spawned')\", {})\n",
         all_of(raises("OSError", "system is not available"), no_file("spawned"))),
    Case("frame_walk_finds_only_guarded_builtins",
         # Frames (body and step) and tracebacks lead to builtins; none may hold the unguarded
         # compile/eval/exec, which the 1 MiB source cap relies on.
         "import sys\n"
         "def names(frame):\n"
         "    out = set()\n"
         "    while frame is not None:\n"
         "        b = frame.f_builtins\n"
         "        out.update(b[n].__name__ for n in ('exec', 'eval', 'compile'))\n"
         "        g = frame.f_globals.get('__builtins__')\n"
         "        g = g if isinstance(g, dict) else g.__dict__\n"
         "        out.update(g[n].__name__ for n in ('exec', 'eval', 'compile'))\n"
         "        frame = frame.f_back\n"
         "    return out\n"
         "seen = names(sys._getframe())\n"
         "try:\n"
         "    raise ValueError\n"
         "except ValueError as e:\n"
         "    seen |= names(e.__traceback__.tb_frame)\n"
         "res = GB('ShardsIDReader').map(lambda x: sorted(names(sys._getframe()))).run()\n"
         + store("repr(sorted(seen))"),
         result(repr(["guarded_compile", "guarded_eval", "guarded_exec"]))),
    Case("modules_hold_no_unguarded_exec",
         "import sys, builtins\n"
         "found = []\n"
         "for mname, m in list(sys.modules.items()):\n"
         "    for k, v in list(getattr(m, '__dict__', {}).items()):\n"
         "        if getattr(v, '__name__', None) in ('exec', 'eval', 'compile') and callable(v):\n"
         "            found.append(mname + '.' + k)\n" + store("repr(found)"),
         result("[]")),
    Case("current_frames_of_other_threads", store("repr(__import__('sys')._current_frames())"), result("{}")),
    Case("_thread_start_new_thread_runs_inline",
         # _thread is a pure-Python stand-in: the "thread" runs at once on the worker itself.
         "import _thread\n"
         "order = []\n"
         "_thread.start_new_thread(lambda: order.append(('thread', _thread.get_ident())), ())\n"
         "order.append(('script', _thread.get_ident()))\n"
         + store("repr(order[0][0] == 'thread' and order[0][1] == order[1][1])"),
         result("True")),
    # --- introspection, tracing, process-wide state -------------------------------------------
    Case("gc_get_objects", "import gc\ngc.get_objects()\n", raises("ModuleNotFoundError", "'gc'")),
    Case("sys_settrace", "import sys\nsys.settrace(lambda *a: None)\n", raises("AttributeError", "settrace")),
    Case("sys_setprofile", "import sys\nsys.setprofile(lambda *a: None)\n", raises("AttributeError", "setprofile")),
    Case("time_clock_settime", "import time\ntime.clock_settime(time.CLOCK_REALTIME, 0)\n",
         raises("AttributeError", "clock_settime")),
    Case("time_tzset", "import time\ntime.tzset()\n", raises("AttributeError", "tzset")),
    Case("ctypes", "import ctypes\nctypes.CDLL(None).system(b'touch {tmp}/spawned')\n",
         all_of(raises("ModuleNotFoundError", "'ctypes'"), no_file("spawned"))),
    Case("_ctypes", "import _ctypes\n", raises("ModuleNotFoundError", "'_ctypes'")),
    Case("cffi", "import cffi\n", raises("ModuleNotFoundError", "'cffi'")),
    Case("signal", "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n",
         raises("ModuleNotFoundError", "'signal'")),
    Case("_signal", "import _signal\n", raises("ModuleNotFoundError", "'_signal'")),
    Case("resource", "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (1, 1))\n",
         raises("ModuleNotFoundError", "'resource'")),
    Case("input_breakpoint",
         "import sys\n"
         "got = []\n"
         "for expr in ('input', 'breakpoint', 'sys.breakpointhook'):\n"
         "    try:\n"
         "        eval(expr)\n"
         "        got.append(expr)\n"
         "    except (NameError, AttributeError):\n"
         "        pass\n" + store("repr(got)"),
         result("[]")),
    # --- code objects ------------------------------------------------------------------------
    Case("marshal_loads", "import marshal\nexec(marshal.loads(b'\\xe3' + b'\\x00' * 64))\n",
         raises("ValueError", "marshal is not available")),
    Case("marshal_via_imp_create_builtin",
         "import _imp\n"
         "class Spec:\n"
         "    name = 'marshal'\n"
         "    origin = None\n"
         "m = _imp.create_builtin(Spec())\n"
         "m.loads(b'\\xe3' + b'\\x00' * 64)\n",
         any_python_error),
    Case("code_replace_co_code",
         # LIST_APPEND with a depth far below the stack: the VM trusts compiler-made bytecode.
         CRAFT_PRELUDE
         + "f = lambda: 0\n"
         "f.__code__ = f.__code__.replace(co_code=bc(('RESUME', 0), ('LOAD_SMALL_INT', 5), ('LOAD_SMALL_INT', 7), "
         "('LIST_APPEND', 100), ('RETURN_VALUE', 0)), co_stacksize=8)\n"
         "f()\n",
         any_python_error),
    Case("code_replace_co_consts",
         "f = lambda: 12345\n"
         "f.__code__ = f.__code__.replace(co_consts=())\n"
         "f()\n",
         any_python_error),
    Case("types_CodeType_new",
         # MAP_ADD on an int that the VM takes for a dict.
         CRAFT_PRELUDE
         + "import types\n"
         "code = types.CodeType(0, 0, 0, 0, 8, 0, bc(('RESUME', 0), ('LOAD_SMALL_INT', 1), ('LOAD_SMALL_INT', 2), "
         "('LOAD_SMALL_INT', 3), ('MAP_ADD', 1), ('RETURN_VALUE', 0)), (), (), (), '<x>', 'x', 'x', 1, b'', b'', (), ())\n"
         "exec(code)\n",
         any_python_error),
    Case("code_via_object_new_and_copy_replace",
         "import copy\n"
         "c = (lambda: 0).__code__\n"
         "got = []\n"
         "for make in (lambda: object.__new__(type(c)), lambda: copy.replace(c, co_consts=()),\n"
         "             lambda: type(c).__new__(type(c))):\n"
         "    try:\n"
         "        got.append(type(make()).__name__)\n"
         "    except (TypeError, AttributeError, ValueError):\n"
         "        pass\n" + store("repr(got)"),
         result("[]")),
    Case("function_with_forged_closure",
         # A closure of the wrong length or of non-cells would make LOAD_DEREF read garbage.
         "import types\n"
         "def outer():\n"
         "    x = 1\n"
         "    def g():\n"
         "        return x\n"
         "    return g\n"
         "g = outer()\n"
         "got = []\n"
         "for make in (lambda: types.FunctionType(g.__code__, {}, 'x', None, (1,)),\n"
         "             lambda: types.FunctionType(g.__code__, {}, 'x', None, ()),\n"
         "             lambda: setattr((lambda: 0), '__code__', g.__code__)):\n"
         "    try:\n"
         "        make()\n"
         "        got.append('made')\n"
         "    except (TypeError, ValueError):\n"
         "        pass\n" + store("repr(got)"),
         result("[]")),
    Case("malformed_ast_compile",
         # AST nodes the parser never makes (Store context in an expression, unbalanced Compare).
         "import ast\n"
         "L = dict(lineno=1, col_offset=0, end_lineno=1, end_col_offset=1)\n"
         "trees = [ast.Expression(ast.BinOp(ast.Name('x', ast.Store(), **L), ast.Add(), ast.Constant(1, **L), **L)),\n"
         "         ast.Expression(ast.Compare(ast.Constant(1, **L), [ast.Lt(), ast.Lt()], [ast.Constant(2, **L)], **L)),\n"
         "         ast.Expression(ast.Dict([ast.Constant(1, **L)], [], **L)),\n"
         "         ast.Expression(ast.Constant(object(), **L))]\n"
         "got = []\n"
         "for t in trees:\n"
         "    try:\n"
         "        compile(t, '<ast>', 'eval')\n"
         "        got.append('compiled')\n"
         "    except (ValueError, TypeError, SyntaxError):\n"
         "        pass\n" + store("repr(got)"),
         result("[]")),
    # --- source size cap (1 MiB) and compiler depth --------------------------------------------
    Case("exec_over_1MiB", "exec('x = 1\\n' * 200000)\n", raises("MemoryError", "exceeds the limit")),
    Case("eval_minus_chain_10M", "eval('-' * 10**7 + '1')\n", raises("MemoryError", "exceeds the limit")),
    Case("compile_bytes_over_1MiB", "compile(b'-' * 10**7 + b'1', '<x>', 'eval')\n",
         raises("MemoryError", "exceeds the limit")),
    Case("eval_memoryview_minus_chain_10M",
         # bytes-like sources other than str/bytes/bytearray must not slip past the cap.
         "eval(memoryview(b'-' * 10**7 + b'1'))\n",
         any_python_error),
    Case("symtable_minus_chain_10M",
         "import _symtable\n_symtable.symtable('-' * 10**7 + '1', '<x>', 'eval')\n",
         any_python_error),
    Case("exec_minus_chain_just_under_1MiB", "exec('-' * 1048000 + '1')\n",
         raises("RecursionError")),
    Case("compile_deep_ast",
         "import ast\n"
         "node = ast.Constant(1, lineno=1, col_offset=0, end_lineno=1, end_col_offset=1)\n"
         "for i in range(5000):\n"
         "    node = ast.UnaryOp(ast.USub(), node, lineno=1, col_offset=0, end_lineno=1, end_col_offset=1)\n"
         "compile(ast.Expression(node), '<x>', 'eval')\n",
         raises("RecursionError")),
    # --- native recursion ----------------------------------------------------------------------
    Case("nested_map_iterators_next",
         "it = iter([1])\n"
         "for i in range(10**6):\n"
         "    it = map(abs, it)\n"
         "next(it)\n",
         raises("RecursionError")),
    Case("nested_filter_iterators_list",
         "it = iter([1])\n"
         "for i in range(10**6):\n"
         "    it = filter(None, it)\n"
         "list(it)\n",
         raises("RecursionError")),
    Case("nested_itertools_mix",
         "import itertools\n"
         "it = iter([1])\n"
         "for i in range(10**6):\n"
         "    it = itertools.chain(zip(enumerate(itertools.islice(it, 5))))\n"
         "sum(1 for _ in it)\n",
         raises("RecursionError")),
    Case("nested_unnamed_iterators",
         # groupby's _grouper, tee's _tee and iter(callable, sentinel) have no public name.
         "import itertools\n"
         "it = iter([1])\n"
         "for i in range(10**6):\n"
         "    it = itertools.groupby(itertools.tee(iter(it.__next__, 5))[0])\n"
         "list(it)\n",
         raises("RecursionError")),
    Case("bigint_power_bomb",
         # One native call that would run for minutes: refused from the operands' sizes.
         "x = 9**9**9\n",
         raises("MemoryError", "integer power too large")),
    Case("bigint_power_bomb_every_spelling",
         "import operator\n"
         "got = []\n"
         "class I(int):\n    pass\n"
         "for f in (lambda: pow(3, 10**30), lambda: operator.pow(7, 10**9), lambda: (111).__pow__(10**9),\n"
         "          lambda: int.__rpow__(10**9, 7), lambda: I(5) ** 10**9, lambda: 5 ** I(10**9)):\n"
         "    try:\n        f()\n    except MemoryError:\n        got.append('refused')\n"
         "x = 2\ntry:\n    x **= 10**9\nexcept MemoryError:\n    got.append('refused')\n" + store("str(len(got))"),
         result("7")),
    Case("bigint_powers_that_fit_are_exact",
         "class J(int):\n    pass\n" +
         store("' '.join(str(v) for v in (len(str(2**10000)), 2**-10**30, (-1)**10**30, pow(3, 10**30, 7), "
               "1**10**40, 0**10**40, 2**-3, len(bin(3**10000000)), (5).__pow__(3), (3).__pow__(4, 5), "
               "int.__rpow__(3, 2), (5).__pow__(2.0), True ** 10**30, J(3) ** 2, 2 ** J(3)))"),
         result("3011 0.0 1 4 1 0 0.125 15849628 125 1 8 NotImplemented 1 9 8")),
    Case("nested_tuple_hash",
         # deep enough for the native stack guard, not only the recursion counter
        "t = ()\nfor i in range(2 * 10**6):\n    t = (t,)\nhash(t)\n", raises("RecursionError")),
    Case("nested_list_repr",
         "l = []\nfor i in range(2 * 10**6):\n    l = [l]\nrepr(l)\n", raises("RecursionError")),
    Case("nested_list_compare",
         "a, b = [], []\nfor i in range(2 * 10**6):\n    a, b = [a], [b]\na == b\n", raises("RecursionError")),
    Case("json_deep_nesting", "import json\njson.loads('[' * 10**6 + ']' * 10**6)\n", raises("RecursionError")),
    # --- regex bombs: native loops, only the time limit and the stuck-worker watchdog end them --
    Case("regex_bomb_in_step",
         "import re\nGB('ShardsIDReader').map(lambda x: re.match('(a*)*b', 'a' * 30)).run()\n",
         step_errors_contain("Execution time limit reached", "stuck in native code"),
         args=("ExecutionThreads", "1", "ExecutionTimeLimit", "1000")),
    Case("regex_bomb_in_script_body",
         "import re\nre.match('(a*)*b', 'a' * 30)\n",
         error_contains("Execution time limit reached", "stuck in native code"),
         args=("ExecutionThreads", "1", "ExecutionTimeLimit", "1000"), deadline=30),
    # --- the Redis lock -----------------------------------------------------------------------
    Case("atomic_entered_in_body_not_exited",
         "atomic().__enter__()\n" + store("'entered'"),
         result("entered")),
    Case("atomic_entered_in_step_not_exited",
         # A step that takes the Redis lock and never gives it back must not freeze Redis.
         "GB('ShardsIDReader').map(lambda x: (atomic().__enter__(), 'entered')[1]).run()\n",
         reply_is([[b"entered"], []]), deadline=30),
    # --- state left for the next script (same worker) ------------------------------------------
    # Imported modules are shared between scripts (docs/python-api.md#script-environment: one sys.modules; json.dumps patched
    # by one script is seen by the next, see test_tier2_runtime). The module's own machinery is
    # not: builtins, sys and the gears shim are put back after every job.
    Case("sys_modules_replace_shim",
         "import sys, types\n"
         "fake = types.ModuleType('redisgears')\n"
         "fake.executeCommand = lambda *a, **k: 'HIJACKED'\n"
         "sys.modules['redisgears'] = fake\n",
         result("PONG"),
         then="import redisgears\n" + store("redisgears.executeCommand('PING')")),
    Case("shim_function_monkeypatch",
         "import redisgears\nredisgears.executeCommand = lambda *a, **k: 'HIJACKED'\n",
         result("PONG"),
         then="import redisgears\n" + store("redisgears.executeCommand('PING')")),
    Case("meta_path_finder_persists",
         "import sys, types\n"
         "class Evil:\n"
         "    @classmethod\n"
         "    def find_spec(cls, name, path=None, target=None):\n"
         "        if name == 'statistics':\n"
         "            import importlib.machinery as m\n"
         "            return m.ModuleSpec(name, cls)\n"
         "    @classmethod\n"
         "    def create_module(cls, spec):\n"
         "        mod = types.ModuleType(spec.name)\n"
         "        mod.mean = lambda xs: 'HIJACKED'\n"
         "        return mod\n"
         "    @classmethod\n"
         "    def exec_module(cls, mod):\n"
         "        pass\n"
         "sys.modules.pop('statistics', None)\n"
         "sys.meta_path.insert(0, Evil)\n",
         result("2"),
         then="import statistics\n" + store("str(statistics.mean([1, 2, 3]))")),
    Case("gearsbuilder_monkeypatch",
         f"GB.run = lambda self, *a, **k: execute('SET', {SPY!r}, 'hijacked')\n",
         all_of(reply_is([[b"real"], []]), no_key(SPY)),
         then="GB('ShardsIDReader').map(lambda x: 'real').run()\n"),
    Case("builtins_monkeypatch",
         "import builtins\nbuiltins.len = lambda x: 12345\nbuiltins.EVIL_GLOBAL = 1\n",
         result("3 False"),
         then="import builtins\n" + store("'%d %s' % (len('abc'), hasattr(builtins, 'EVIL_GLOBAL'))")),
    Case("sys_stdout_capture",
         "import sys\n"
         "class Capture:\n"
         "    def write(self, s):\n"
         f"        execute('APPEND', {SPY!r}, s)\n"
         "    def flush(self):\n"
         "        pass\n"
         "sys.stdout = Capture()\n",
         all_of(reply_is("OK"), no_key(SPY)),
         then="print('victim secret')\n"),
    Case("sys_monitoring_spy",
         # A tool id and callbacks stay registered and see the next script's frames.
         "import sys\n"
         "m = sys.monitoring\n"
         "m.use_tool_id(3, 'spy')\n"
         "def cb(code, offset):\n"
         f"    execute('APPEND', {SPY!r}, code.co_name + repr(sys._getframe(1).f_locals) + ';')\n"
         "m.register_callback(3, m.events.PY_START, cb)\n"
         "m.set_events(3, m.events.PY_START)\n",
         all_of(reply_is("OK"), no_key(SPY)),
         then="def login(password='victim secret'):\n    return len(password)\nlogin()\n"),
    Case("sys_addaudithook_spy",
         "import sys\n"
         f"sys.addaudithook(lambda event, args: execute('APPEND', {SPY!r}, event + repr(args) + ';'))\n",
         all_of(reply_is("OK"), no_key(SPY)),
         then="compile('secret = 1', '<victim>', 'exec')\n"),
    Case("asyncgen_hooks_persist",
         "import sys\n"
         f"sys.set_asyncgen_hooks(firstiter=lambda g: execute('APPEND', {SPY!r}, 'saw ' + g.__name__))\n",
         all_of(reply_is("OK"), no_key(SPY)),
         then="async def victim():\n    yield 1\n"
              "try:\n    victim().asend(None).send(None)\nexcept StopIteration:\n    pass\n"),
    Case("unraisablehook_persists",
         "import sys\n"
         f"sys.unraisablehook = lambda u: execute('APPEND', {SPY!r}, repr(u.exc_value))\n",
         all_of(reply_is("OK"), no_key(SPY)),
         then="class D:\n    def __del__(self):\n        raise ValueError('victim secret')\nd = D()\ndel d\n"),
    Case("redisgears_register_types_tamper",
         # The native module's own hook; the next script's gears.error must still be gears.error.
         "import _redisgears\n_redisgears.register_types(KeyError, KeyError, KeyError)\n",
         raises("gears.error: ERR unknown command"),
         then="execute('NOSUCHCOMMAND')\n"),
    Case("shim_patched_inside_a_step",
         # The patch comes from a callback of the execution, not from the script body.
         f"GB('ShardsIDReader').map(lambda x: setattr(GB, 'run', lambda self, *a, **k: execute('SET', {SPY!r}, 'hijacked'))).run()\n",
         all_of(reply_is([[b"real"], []]), no_key(SPY)),
         then="GB('ShardsIDReader').map(lambda x: 'real').run()\n"),
    Case("baseline_module_dict_via_globals",
         # A shim function's globals are the gears module's own namespace.
         "GB.__init__.__globals__['GB'] = None\n"
         "import sys\ndel sys.modules['gears']\n",
         reply_is([[b"real"], []]),
         then="GB('ShardsIDReader').map(lambda x: 'real').run()\n"),
    Case("recursion_limit_persists",
         "import sys\nsys.setrecursionlimit(50)\n",
         result("1000"),
         then="import sys\n" + store("str(sys.getrecursionlimit())")),
    # ---- stdlib modules bundled for scripts: nothing more reachable through them ----
    Case("pickle_loads_os_system",
         "import pickle\npickle.loads(b\"cos\\nsystem\\n(S'touch {tmp}/spawned'\\ntR.\")\n",
         all_of(raises("OSError", "system is not available in the rustgears sandbox"), no_file("spawned"))),
    Case("pickle_loads_subprocess",
         "import pickle\npickle.loads(b\"csubprocess\\ncall\\n((S'touch'\\nS'{tmp}/spawned'\\nltR.\")\n",
         all_of(raises("ModuleNotFoundError", "'subprocess' (not available in the rustgears sandbox)"),
                no_file("spawned"))),
    Case("pickle_loads_posix_via_builtins_import",
         "import pickle\npickle.loads(b\"cbuiltins\\n__import__\\n(S'posix'\\ntR.\").system('touch {tmp}/spawned')\n",
         all_of(raises("OSError", "not available in the rustgears sandbox"), no_file("spawned"))),
    Case("pickle_load_from_file",
         "import pickle\npickle.load(open('/etc/passwd', 'rb'))\n",
         raises("UnsupportedOperation")),
    Case("zlib_native_not_importable",
         "import _imp\n"
         "class Spec:\n"
         "    name = 'zlib'\n"
         "    origin = None\n"
         "import sys\n" + store("repr([_imp.create_builtin(Spec()), _imp.is_builtin('zlib'), 'zlib' in sys.builtin_module_names])"),
         result(repr([None, False, False]))),
    Case("zlib_bomb_through_the_type",
         # The Decompress type's own methods are the bounded ones: no unbounded native to reach.
         "import zlib\n"
         "co = zlib.compressobj(9, zlib.DEFLATED, -15)\n"
         "z = bytes(1 << 20)\n"
         "bomb = co.compress(z) + co.flush(zlib.Z_SYNC_FLUSH) + (co.compress(z) + co.flush(zlib.Z_SYNC_FLUSH)) * 4096\n"
         "d = zlib.decompressobj(-15)\n"
         "for f in (type(d).decompress, type(d).__dict__['decompress'], type(d.copy()).decompress):\n"
         "    try:\n"
         "        f(zlib.decompressobj(-15), bomb)\n"
         "    except MemoryError:\n"
         "        pass\n"
         "    else:\n"
         "        raise AssertionError('inflated without bound')\n"
         "zlib.decompress(bomb, -15)\n",
         raises("MemoryError", "zlib: decompressed data exceeds the Python memory limit"),
         args=("ExecutionThreads", "1", "PythonMemoryLimit", "100000000")),
    Case("left_out_finder_removed",
         "import sys\nsys.meta_path.pop()\n",
         raises("ModuleNotFoundError", "'socket' (not available in the rustgears sandbox)"),
         then="import socket\n"),
    Case("left_out_finder_names_emptied",
         "import sys\ntype(sys.meta_path[-1])._names = frozenset()\n",
         raises("ModuleNotFoundError", "'socket' (not available in the rustgears sandbox)"),
         then="import socket\n"),
    Case("queue_get_on_empty_queue",
         # One thread: a blocking get() could never return. It must fail at once, not loop.
         "import queue\nqueue.Queue().get()\n",
         raises("RuntimeError: deadlock"), deadline=30.0),
    Case("int_max_str_digits_zero_persists",
         "import sys\nsys.set_int_max_str_digits(0)\n",
         result("4300"),
         then="import sys\n" + store("str(sys.get_int_max_str_digits())")),
]


# Open findings of this corpus, not fixed yet (see the closing note of the session that found
# them). They stay in the corpus and must start passing when fixed (strict xfail); the two that
# crash Redis are skipped, because a crashed server fails every later check of its test.
CRASHES_REDIS: dict[str, str] = {}
OPEN_FINDINGS: dict[str, str] = {}


def _param(case):
    marks = [pytest.mark.module_args(*case.args)]
    if case.name in CRASHES_REDIS:
        marks.append(pytest.mark.skip(reason="open finding, crashes Redis: " + CRASHES_REDIS[case.name]))
    elif case.name in OPEN_FINDINGS:
        marks.append(pytest.mark.xfail(strict=True, reason="open finding: " + OPEN_FINDINGS[case.name]))
    return pytest.param(case, id=case.name, marks=marks)


def test_corpus_size():
    assert len(CORPUS) >= 50, len(CORPUS)
    names = [c.name for c in CORPUS]
    assert len(names) == len(set(names)), "duplicate case names"


def _prepare_files(case, tmp):
    if case.needs_file:
        with open(os.path.join(tmp, "evilmod.py"), "w") as f:
            f.write(EVIL_MODULE)
    if case.needs_so:
        cc = shutil.which("cc") or shutil.which("gcc")
        target = os.path.join(tmp, "evil.so")
        if cc:
            src = os.path.join(tmp, "evil.c")
            with open(src, "w") as f:
                f.write(EVIL_C.replace("PWNED_PATH", '"%s"' % os.path.join(tmp, "pwned")))
            subprocess.run([cc, "-shared", "-fPIC", "-o", target, src], check=True, capture_output=True)
        else:
            # No compiler: any real shared object still shows whether the loader dlopens it.
            import ctypes.util
            lib = ctypes.util.find_library("c") or "libc.so.6"
            os.symlink(lib if os.path.isabs(lib) else f"/lib/x86_64-linux-gnu/{lib}", target)


def _frozen(server):
    """True if the server does not answer PING within a few seconds."""
    try:
        probe = RawConnection(server.port, timeout=5)
    except OSError:
        return True
    try:
        return probe.call("PING") != "PONG"
    except OSError:
        return True
    finally:
        probe.close()


def _run(server, conn, script):
    try:
        return conn.call("RG.PYEXECUTE", script)
    except socket.timeout:
        if _frozen(server):
            # Nothing can be checked on a frozen server; kill it so the teardown does not wait.
            server.proc.kill()
            server.proc.wait(timeout=30)
            pytest.fail(f"no reply within {conn.sock.gettimeout()}s and redis-server no longer answers PING: "
                        f"Redis is frozen (the test killed it)")
        pytest.fail(f"no reply within {conn.sock.gettimeout()}s: the client is left blocked")
    except OSError as e:  # connection reset / closed: did the server die?
        server.wait_exit(timeout=5)
        if not server.alive():
            pytest.fail(f"redis-server died (exit code {server.proc.returncode}) while running the script "
                        f"({e!r}); log tail:\n{server.log_tail(20)}")
        raise


@pytest.mark.parametrize("case", [_param(c) for c in CORPUS])
def test_attack(case, server, tmp_path):
    tmp = str(tmp_path)
    _prepare_files(case, tmp)
    fmt = {"tmp": tmp, "port": server.port}
    script = case.script.replace("{tmp}", fmt["tmp"]).replace("{port}", str(fmt["port"]))

    conn = RawConnection(server.port, timeout=case.deadline)
    canary = uuid.uuid4().hex
    assert conn.call("SET", "canary", canary) == "OK"

    first = None
    if case.then is not None:
        first = _run(server, conn, script)
        conn.call("DEL", RESULT, SPY, EVIL)
        script = case.then
    reply = _run(server, conn, script)

    case.check(Ctx(server, conn, tmp, reply, first))

    # The server survived, the canary is intact, and the module still runs scripts.
    problem = server.check_health()
    assert problem is None, f"redis-server {problem}; log tail:\n{server.log_tail()}"
    check = RawConnection(server.port, timeout=REPLY_DEADLINE)
    try:
        assert check.call("PING") == "PONG"
        assert check.call("GET", "canary") == canary.encode()
        assert check.call("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: 'sane').run()") == [[b"sane"], []]
    finally:
        check.close()
        conn.close()
