"""The standard library scripts can import (docs/sandbox.md, "What scripts can import"): the
modules bundled for them work, a module left out says so, and zlib's decompression is bounded."""

import pytest

from conftest import Status, script_error

RESULT = "stdlib:result"


def run(r, body):
    """Runs `body`, which stores repr(out) under RESULT; returns what it stored."""
    assert r.execute_command("RG.PYEXECUTE", body + f"\nexecute('SET', {RESULT!r}, repr(out))\n") == "OK"
    return r.get(RESULT)


def test_csv(r):
    got = run(r, "import csv, io\n"
                 "buf = io.StringIO()\n"
                 "csv.writer(buf).writerow(['a', 'b,c', 1])\n"
                 "out = [buf.getvalue(), list(csv.reader(['x,\"y,z\",3'])),\n"
                 "       list(csv.DictReader(io.StringIO('h1,h2\\n1,2\\n')))]\n")
    assert got == repr(['a,"b,c",1\r\n', [['x', 'y,z', '3']], [{'h1': '1', 'h2': '2'}]])


def test_urllib_parse(r):
    got = run(r, "from urllib.parse import urlparse, quote, unquote, parse_qs, urlencode\n"
                 "u = urlparse('http://u:p@host:80/p?q=1#f')\n"
                 "out = [u.hostname, u.port, u.path, quote('a b/c'), unquote('a%20b'),\n"
                 "       parse_qs('a=1&a=2&b=3'), urlencode({'k': 'v w'})]\n")
    assert got == repr(['host', 80, '/p', 'a%20b/c', 'a b', {'a': ['1', '2'], 'b': ['3']}, 'k=v+w'])


def test_html_and_html_parser(r):
    got = run(r, "import html, html.parser\n"
                 "class P(html.parser.HTMLParser):\n"
                 "    def __init__(self):\n"
                 "        super().__init__()\n"
                 "        self.seen = []\n"
                 "    def handle_starttag(self, tag, attrs):\n"
                 "        self.seen.append((tag, attrs))\n"
                 "    def handle_data(self, data):\n"
                 "        self.seen.append(data)\n"
                 "p = P()\n"
                 "p.feed('<div class=\"x\"><p>hi &amp; bye</p></div>')\n"
                 "out = [html.escape('<a href=\"x\">'), html.unescape('&lt;&eacute;&#65;'), p.seen]\n")
    assert got == repr(['&lt;a href=&quot;x&quot;&gt;', '<éA', [('div', [('class', 'x')]), ('p', []), 'hi & bye']])


def test_difflib_fnmatch_shlex(r):
    got = run(r, "import difflib, fnmatch, shlex\n"
                 "out = [list(difflib.unified_diff(['a\\n', 'b\\n'], ['a\\n', 'c\\n'], lineterm='')),\n"
                 "       difflib.get_close_matches('appel', ['ape', 'apple', 'peach']),\n"
                 "       fnmatch.fnmatch('user:1', 'user:*'), fnmatch.filter(['a.py', 'b.txt'], '*.py'),\n"
                 "       shlex.split('a \"b c\" d'), shlex.quote(\"it's\")]\n")
    assert got == repr([['--- ', '+++ ', '@@ -1,2 +1,2 @@', ' a\n', '-b\n', '+c\n'], ['apple', 'ape'],
                        True, ['a.py'], ['a', 'b c', 'd'], "'it'\"'\"'s'"])


def test_ipaddress_and_secrets(r):
    got = run(r, "import ipaddress, secrets\n"
                 "net = ipaddress.ip_network('10.0.0.0/30')\n"
                 "out = [[str(h) for h in net.hosts()], ipaddress.ip_address('::1').version,\n"
                 "       ipaddress.ip_address('10.0.0.2') in net, len(secrets.token_hex(8)),\n"
                 "       len(secrets.token_bytes(5)), secrets.compare_digest(b'a', b'a'), secrets.randbelow(1)]\n")
    assert got == repr([['10.0.0.1', '10.0.0.2'], 6, True, 16, 5, True, 0])


def test_queue_and_threading_have_one_thread(r):
    got = run(r, "import queue, threading\n"
                 "q = queue.Queue()\n"
                 "q.put(1)\nq.put(2)\n"
                 "pq = queue.PriorityQueue()\n"
                 "pq.put(3)\npq.put(1)\n"
                 "out = [q.get(), q.get(), q.empty(), pq.get()]\n"
                 "try:\n    q.get_nowait()\nexcept queue.Empty:\n    out.append('empty')\n"
                 "try:\n    q.get(timeout=0.05)\nexcept queue.Empty:\n    out.append('timed out')\n"
                 "done = []\n"
                 "t = threading.Thread(target=lambda: done.append(1))\n"
                 "t.start()\nt.join()\n"
                 "out.append(done)\n")
    assert got == repr([1, 2, True, 1, 'empty', 'timed out', [1]])


def test_blocking_on_an_empty_queue_is_a_deadlock_error(raw):
    # There is no other thread to put an item: waiting would never end.
    for script in ("import queue\nqueue.Queue().get()\n", "import queue\nq = queue.Queue(1)\nq.put(1)\nq.put(2)\n",
                   "import threading\nlock = threading.Lock()\nlock.acquire()\nlock.acquire()\n"):
        text = script_error(raw, script)
        assert "RuntimeError: deadlock: the lock is held and no other thread can release it" in text, text
    assert raw.call("PING") == Status("PONG")


def test_array(r):
    got = run(r, "import array\n"
                 "a = array.array('i', [1, 2, 3])\n"
                 "a.append(4)\n"
                 "b = array.array('d')\n"
                 "b.frombytes(array.array('d', [1.5]).tobytes())\n"
                 "out = [a.tolist(), a.itemsize * len(a) == len(a.tobytes()), b[0], a.typecode]\n")
    assert got == repr([[1, 2, 3, 4], True, 1.5, 'i'])


def test_pickle_round_trip(r):
    got = run(r, "import pickle, io\n"
                 "data = {'a': [1, (2, 3)], 'b': {4}, 'c': b'x', 'd': None}\n"
                 "buf = io.BytesIO()\n"
                 "pickle.dump(data, buf)\n"
                 "out = [pickle.loads(pickle.dumps(data)) == data, 'é€'.encode('cp1252'),\n"
                 "       pickle.loads(pickle.dumps(data, protocol=0)) == data,\n"
                 "       pickle.load(io.BytesIO(buf.getvalue())) == data]\n")
    assert got == repr([True, b'\xe9\x80', True, True])


def test_pickle_reaches_only_what_imports_reach(raw):
    # A pickle may name any importable callable, so it can do what the script could do itself,
    # and no more: os is the stand-in, subprocess is left out.
    text = script_error(raw, "import pickle\npickle.loads(b\"cos\\nsystem\\n(S'true'\\ntR.\")\n")
    assert "OSError: [Errno 38] system is not available in the rustgears sandbox" in text, text
    text = script_error(raw, "import pickle\npickle.loads(b\"csubprocess\\nPopen\\n(S'true'\\ntR.\")\n")
    assert "No module named 'subprocess' (not available in the rustgears sandbox)" in text, text
    text = script_error(raw, "import pickle\npickle.load(open('/etc/passwd', 'rb'))\n")
    assert "root:" not in text and "UnsupportedOperation" in text, text


def test_zlib_round_trips(r):
    got = run(r, "import zlib\n"
                 "data = b'hello world ' * 10000\n"
                 "c = zlib.compress(data, 9)\n"
                 "d = zlib.decompressobj()\n"
                 "head = d.decompress(c, 10)\n"
                 "rest = d.decompress(d.unconsumed_tail)\n"
                 "g = zlib.compressobj(wbits=31)\n"
                 "gz = g.compress(data) + g.flush()\n"
                 "d2 = zlib.decompressobj()\n"
                 "part = d2.decompress(c + b'trailing', 100)\n"
                 "whole = part + d2.flush()\n"
                 "out = [zlib.decompress(c) == data, len(head), head + rest == data, d.eof,\n"
                 "       zlib.decompress(gz, 31) == data, zlib.decompress(c, bufsize=1) == data,\n"
                 "       whole == data, d2.unused_data, zlib.crc32(b'abc'), zlib.adler32(b'abc'),\n"
                 "       hasattr(zlib, '_ZlibDecompressor')]\n")
    assert got == repr([True, 10, True, True, True, True, True, b'trailing', 891568578, 38600999, False])


def test_zlib_decompresses_more_than_one_chunk(r):
    # 20 MiB: several of the chunks the bounded decompression works in.
    got = run(r, "import zlib\n"
                 "data = bytes(range(256)) * (20 * 4096)\n"
                 "c = zlib.compress(data)\n"
                 "d = zlib.decompressobj()\n"
                 "out = [zlib.decompress(c) == data, d.decompress(c) == data, d.eof,\n"
                 "       zlib.decompressobj().decompress(c, 2**40) == data]\n")
    assert got == repr([True, True, True, True])


def test_zlib_errors_keep_their_texts(raw):
    text = script_error(raw, "import zlib\nzlib.decompress(zlib.compress(b'x' * 100)[:10])\n")
    assert text.endswith(repr("zlib.error: Error -5 while decompressing data: incomplete or truncated stream\n") + "]"), text
    text = script_error(raw, "import zlib\nzlib.decompress(b'not zlib data')\n")
    assert "zlib.error: " in text, text
    text = script_error(raw, "import zlib\nzlib.decompressobj().decompress(b'', -1)\n")
    assert "ValueError: max_length must be non-negative" in text, text
    text = script_error(raw, "import zlib\nzlib.decompress(b'', bufsize=-1)\n")
    assert "ValueError: bufsize must be non-negative" in text, text


# A raw deflate stream of 10 GiB of zeros in about 10 MB: each 1 MiB block after the first
# compresses to the same bytes.
BOMB = (
    "import zlib\n"
    "co = zlib.compressobj(9, zlib.DEFLATED, -15)\n"
    "z = bytes(1 << 20)\n"
    "first = co.compress(z) + co.flush(zlib.Z_SYNC_FLUSH)\n"
    "block = co.compress(z) + co.flush(zlib.Z_SYNC_FLUSH)\n"
    "bomb = first + block * 10240 + co.flush()\n"
    "del z, first, block\n"
)

BOMB_USES = [
    "zlib.decompress(bomb, -15)",
    "zlib.decompressobj(-15).decompress(bomb)",
    "zlib.decompressobj(-15).decompress(bomb, 2**40)",
    "d = zlib.decompressobj(-15)\nd.decompress(bomb, 10)\nd.flush()",
    "zlib.decompressobj(-15).copy().decompress(bomb)",
    "d = zlib.decompressobj(-15)\ntype(d).decompress(d, bomb)",
]


@pytest.mark.module_args("ExecutionThreads", "1", "PythonMemoryLimit", "100000000")
@pytest.mark.parametrize("use", BOMB_USES)
def test_zlib_bomb_stops_at_the_memory_limit(raw, use):
    text = script_error(raw, BOMB + use)
    assert "MemoryError: zlib: decompressed data exceeds the Python memory limit" in text, text
    assert raw.call("PING") == Status("PONG")
    assert raw.call("RG.PYEXECUTE", "import zlib\nexecute('SET', 'z', len(zlib.decompress(zlib.compress(b'ok'))))") == "OK"
    assert raw.call("GET", "z") == b"2"


def test_zlib_bomb_stops_at_the_cap_per_call(raw):
    # With the default 1 GiB limit, the 256 MiB cap of one call ends it first.
    text = script_error(raw, BOMB + "zlib.decompress(bomb, -15)")
    assert ("MemoryError: zlib: decompressed data exceeds 268435456 bytes, "
            "the most one zlib call may produce in the rustgears sandbox") in text, text
    assert raw.call("PING") == Status("PONG")


IMPORTABLE = ["csv", "urllib", "urllib.parse", "html", "html.parser", "html.entities", "difflib", "fnmatch",
              "shlex", "ipaddress", "secrets", "hmac", "queue", "threading", "array", "pickle", "zlib"]


def test_new_modules_import(raw):
    script = "".join(f"import {m}\n" for m in IMPORTABLE)
    assert raw.call("RG.PYEXECUTE", script) == Status("OK")


LEFT_OUT = ["socket", "_socket", "ssl", "select", "selectors", "subprocess", "multiprocessing", "signal",
            "ctypes", "mmap", "resource", "http", "urllib.request", "sqlite3", "gzip", "bz2", "lzma",
            "xml", "pyexpat", "tempfile", "shutil", "pathlib", "glob", "gc", "zoneinfo", "_pickle", "_queue", "pty",
            "webbrowser"]


@pytest.mark.parametrize("name", LEFT_OUT)
def test_left_out_module_says_so(raw, name):
    text = script_error(raw, f"import {name}\n")
    assert text == ("['Traceback (most recent call last):\\n', '  File \"<string>\", line 1, in <module>\\n', "
                    f"\"ModuleNotFoundError: No module named '{name}' (not available in the rustgears sandbox)\\n\"]"), text


def test_unknown_module_is_not_called_left_out(raw):
    # A package outside the standard library is told apart (tests/test_rg12_compat.py has more).
    text = script_error(raw, "import numpy\n")
    assert text.endswith(repr("ModuleNotFoundError: No module named 'numpy' (not available in the rustgears "
                              "sandbox: REQUIREMENTS/pip packages are not supported)\n") + "]"), text
    text = script_error(raw, "import json.nosuch\n")
    assert "No module named 'json.nosuch' (not available in the rustgears sandbox)" in text, text
    # A package left out is reported by its top-level name, which is the import that fails.
    text = script_error(raw, "import xml.etree.ElementTree\n")
    assert "No module named 'xml' (not available in the rustgears sandbox)" in text, text


def test_left_out_error_is_an_import_error_to_the_script(r):
    got = run(r, "out = []\n"
                 "try:\n    import socket\nexcept ImportError as e:\n    out += [type(e).__name__, e.name]\n"
                 "import importlib\n"
                 "try:\n    importlib.import_module('subprocess')\nexcept ModuleNotFoundError as e:\n    out.append(e.name)\n")
    assert got == repr(['ModuleNotFoundError', 'socket', 'subprocess'])


@pytest.mark.module_args("ExecutionThreads", "1")
def test_left_out_message_survives_a_script_removing_it(raw):
    # The finder is part of the module's machinery: put back after the job that removed it.
    reply = raw.call("RG.PYEXECUTE", "import sys\nsys.meta_path[:] = sys.meta_path[:2]\n"
                                     "try:\n    import socket\nexcept ImportError as e:\n"
                                     "    execute('SET', 'inside', str(e))\n")
    assert reply == Status("OK")
    assert raw.call("GET", "inside") == b"No module named 'socket'"
    text = script_error(raw, "import socket\n")
    assert "(not available in the rustgears sandbox)" in text, text


def test_importing_stdlib_modules_does_not_grow_start_up(raw):
    # Frozen modules load on import only: a fresh script has not imported the new ones.
    reply = raw.call("RG.PYEXECUTE", "import sys\n"
                                     f"execute('SET', 'loaded', repr(sorted(m for m in {IMPORTABLE!r} if m in sys.modules)))\n")
    assert reply == Status("OK")
    assert raw.call("GET", "loaded") == b"[]"

