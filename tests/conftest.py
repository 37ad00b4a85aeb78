"""Test harness for rustgears: a real redis-server with the module loaded, one per test.

Module path: $RUSTGEARS_MODULE, else $CARGO_TARGET_DIR/release/librustgears.so, where
CARGO_TARGET_DIR defaults to $HOME/.cache/rustgears/target.

Fixtures
  server          a fresh redis-server for this test (module args from @pytest.mark.module_args)
  start_server    factory: start_server(*module_args) -> Server (e.g. for a replica);
                  start_server(*module_args, expect_exit=True) -> Server whose process is expected to die
  r               redis-py client (decode_responses=True) of `server`
  raw             RawConnection of `server` (exact RESP types: Status / Error / bytes / int / list)

Nothing here asserts speed: every wait is a polling loop with a generous deadline.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import redis

# Error, RawConnection and Status are re-exported: the tests import them from here.
from harness import SOCKET_TIMEOUT, Clients, Error, RawConnection, ServerStartError, Status, launch, module_path  # noqa: F401

SHARD0 = "0" * 40
BLOCK_ERR = "Can not run gears inside a multi exec, lua, or when blocking is not allowed"
NO_EXEC = "execution plan does not exist"
STILL_RUNNING = "execution is still running"
DROP_RUNNING = "can not drop a not yet finished execution, abort it first."

# A generous deadline: an upper bound for waiting, never a speed assertion.
WAIT_DEADLINE = 120.0


def exec_id(n):
    return f"{SHARD0}-{n}"


def id_number(eid):
    shard, _, n = eid.rpartition("-")
    assert shard == SHARD0, eid
    return int(n)


def wait_until(pred, timeout=WAIT_DEADLINE, interval=0.05, what="condition"):
    """Poll pred() until it returns a truthy value; return that value. Fails after the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Server management
# --------------------------------------------------------------------------------------------


class Server(Clients):
    def __init__(self, so, module_args, workdir, expect_exit=False):
        self.so = so
        self.module_args = [str(a) for a in module_args]
        self.dir = workdir
        self.logfile = os.path.join(workdir, "redis.log")
        self.expect_exit = expect_exit
        self.proc = None
        self.port = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        try:
            self.proc, self.port = launch(self.so, self.module_args, self.dir, self.logfile, wait=not self.expect_exit)
        except ServerStartError as e:
            pytest.fail(str(e))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_health(self):
        """None if the server is alive and answers PING; else a description of what went wrong.
        The PING also makes sure that a command a test sent last has been processed."""
        if not self.alive():
            return f"died during the test (exit code {self.proc.returncode})"
        try:
            c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60, socket_connect_timeout=10)
            try:
                c.ping()
            finally:
                c.close()
        except (redis.ConnectionError, redis.TimeoutError) as e:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if not self.alive():
                return f"died during the test (exit code {self.proc.returncode})"
            return f"did not answer PING at the end of the test ({e!r})"
        return None

    def wait_exit(self, timeout=30):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        self.close_clients()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait_log(self, text, timeout=WAIT_DEADLINE):
        return wait_until(lambda: text in self.log(), timeout=timeout, what=f"{text!r} in the server log")


@pytest.fixture(scope="session")
def so_path():
    path = module_path()
    if not os.path.isfile(path):
        pytest.fail(
            f"rustgears module not found at {path!r}. Build it (make build / cargo build --release) "
            f"or point RUSTGEARS_MODULE at librustgears.so.",
            pytrace=False,
        )
    return os.path.abspath(path)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "module_args(*args): module load arguments for the per-test redis-server"
    )


@pytest.fixture
def start_server(so_path, request):
    servers = []
    dirs = []

    def start(*module_args, expect_exit=False):
        d = tempfile.mkdtemp(prefix="rustgears-test-")
        dirs.append(d)
        s = Server(so_path, module_args, d, expect_exit=expect_exit)
        servers.append(s)
        return s.start()

    yield start
    stop_servers(servers, dirs)


def stop_servers(servers, dirs):
    """Kills the servers a fixture started; fails the test if one crashed (its directory is kept
    for a look), else removes their directories."""
    crashed = []
    for s in servers:
        if not s.expect_exit:
            problem = s.check_health()
            if problem:
                crashed.append(f"redis-server on port {s.port} {problem}; log tail:\n{s.log_tail()}")
        s.kill()
    if not crashed:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    if crashed:
        pytest.fail("\n\n".join(crashed), pytrace=False)


@pytest.fixture
def server(start_server, request):
    marker = request.node.get_closest_marker("module_args")
    args = marker.args if marker else ()
    return start_server(*args)


@pytest.fixture
def r(server):
    return server.client()


@pytest.fixture
def raw(server):
    return server.raw()


# --------------------------------------------------------------------------------------------
# Helpers for tests
# --------------------------------------------------------------------------------------------


# How long a command whose reply must come is waited for (never a speed assertion).
REPLY_DEADLINE = 120.0


def call(server, *args, timeout=REPLY_DEADLINE):
    """One command on a fresh raw connection with a generous deadline (a missing reply fails)."""
    c = RawConnection(server.port, timeout=timeout)
    try:
        return c.call(*args)
    except socket.timeout:
        pytest.fail(f"no reply to {args[0]} within {timeout}s")
    finally:
        c.close()


def pyexecute(client, script, *args):
    return client.execute_command("RG.PYEXECUTE", script, *args)


def error_text(client, *cmd):
    """Run a command that must fail; return the error message as redis-py gives it."""
    with pytest.raises(redis.ResponseError) as ei:
        client.execute_command(*cmd)
    return str(ei.value)


def dump_executions(client):
    """RG.DUMPEXECUTIONS as a list of (id, status, registered)."""
    out = []
    for entry in client.execute_command("RG.DUMPEXECUTIONS"):
        assert len(entry) == 6, entry
        assert entry[0] == "executionId" and entry[2] == "status" and entry[4] == "registered", entry
        out.append((entry[1], entry[3], entry[5]))
    return out


def status_of(client, eid):
    for i, st, _reg in dump_executions(client):
        if i == eid:
            return st
    return None


def gate_script(gate, result="released", max_polls=12000):
    """A PythonReader execution that keeps running until key `gate` exists (polling every 10 ms,
    bounded so it always ends), then yields `result`. Deterministic: the test decides when it ends."""
    return (
        "import time\n"
        "def gen():\n"
        "    n = 0\n"
        f"    while execute('EXISTS', {gate!r}) == 0 and n < {max_polls}:\n"
        "        time.sleep(0.01)\n"
        "        n += 1\n"
        f"    yield {result!r}\n"
        "GB('PythonReader').run(gen)\n"
    )


def wait_status(client, eid, statuses, what=None):
    if isinstance(statuses, str):
        statuses = (statuses,)
    return wait_until(lambda: status_of(client, eid) in statuses,
                      what=what or f"execution {eid} to reach {statuses}")


def blocked_clients(client):
    return int(client.info("clients")["blocked_clients"])


# Python error texts (docs/commands.md#python-error-texts) ----------------------------------------------------------------------

TB_START = "['Traceback (most recent call last):\\n'"


def tb_end(line):
    """How a form-2 Python error text (docs/commands.md#python-error-texts) ends when its last line is `line`."""
    return repr(line + "\n") + "]"


def script_error(raw, script):
    res = raw.call("RG.PYEXECUTE", script)
    assert type(res) is Error, res
    return str(res)


def assert_gears_error(raw, script, msg):
    """The script must fail with gears.error(msg), formatted as a traceback (docs/commands.md#python-error-texts, form 2)."""
    text = script_error(raw, script)
    assert text.startswith(TB_START), text
    assert text.endswith(tb_end("gears.error: " + msg)), text
