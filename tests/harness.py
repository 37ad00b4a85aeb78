"""What the pytest suite (conftest.py), `make bench` (bench/gears_bench) and `make soak`
(bench/soak.py) share: where the module is, a redis-server with it on a free port, a process's
resident memory, and a RESP client that keeps the exact reply types.
No pytest here: bench and soak run outside it."""

import os
import shutil
import socket
import subprocess
import time

# Generous deadlines: upper bounds for waiting, never speed assertions.
START_DEADLINE = 10.0
SOCKET_TIMEOUT = 300.0

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class ServerStartError(RuntimeError):
    pass


def module_path():
    path = os.environ.get("RUSTGEARS_MODULE")
    if path:
        return path
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "rustgears", "target"
    )
    return os.path.join(target, "release", "librustgears.so")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# A tiny RESP client that keeps the exact reply types (redis-py folds status into str and
# strips error prefixes such as "ERR ").
# --------------------------------------------------------------------------------------------


class Status(str):
    """A RESP simple string (+...)."""

    def __repr__(self):
        return f"Status({str.__repr__(self)})"


class Error(str):
    """A RESP error reply (-...), full text without the leading '-'."""

    def __repr__(self):
        return f"Error({str.__repr__(self)})"


class Double(float):
    """A RESP3 double (,...)."""


class RawConnection:
    def __init__(self, port, timeout=SOCKET_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    @staticmethod
    def _enc(a):
        if isinstance(a, (bytes, bytearray)):
            return bytes(a)
        return str(a).encode("utf-8")

    def send(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = self._enc(a)
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))

    def _line(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed by server")
        assert line.endswith(b"\r\n"), line
        return line[:-2]

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return Status(rest.decode("utf-8", "surrogateescape"))
        if t == b"-":
            return Error(rest.decode("utf-8", "surrogateescape"))
        if t == b":":
            return int(rest)
        if t in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            if t == b"!":
                return Error(data.decode("utf-8", "surrogateescape"))
            return data
        if t in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        if t == b"%":
            n = int(rest)
            return [(self.read(), self.read()) for _ in range(n)]
        if t == b"_":
            return None
        if t == b",":
            return Double(float(rest))
        if t == b"#":
            return rest == b"t"
        if t == b"(":
            return int(rest)
        if t == b"|":
            n = int(rest)
            for _ in range(2 * n):
                self.read()
            return self.read()
        raise AssertionError(f"unknown RESP type in {line!r}")

    def call(self, *args):
        self.send(*args)
        return self.read()

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()


def launch(module, module_args, workdir, logfile, wait=True, *, extra_args=(), start_deadline=START_DEADLINE,
           poll=0.05, started=None):
    """Starts redis-server with the module on a free port and returns (process, port), once it
    answers PING unless `wait` is false. Raises ServerStartError (the process is gone then).

    `module` None starts a server without the module (bench's anchors); `extra_args` are more
    server options; `start_deadline` and `poll` bound and pace the wait for PING; `started`, if
    given, is called with each process as soon as it exists, so that a caller interrupted
    during the wait can still kill it."""
    for _attempt in range(5):
        port = free_port()
        if os.path.exists(logfile):
            os.unlink(logfile)
        cmd = [
            REDIS_SERVER,
            "--port", str(port),
            "--bind", "127.0.0.1",
            *(["--loadmodule", module, *module_args] if module else []),
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
            "--enable-debug-command", "yes",
            "--logfile", logfile,
            "--daemonize", "no",
            *extra_args,
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if started is not None:
            started(proc)
        if not wait or _answers_ping(proc, port, start_deadline, poll):
            return proc, port
        log = _read(logfile)
        if proc.poll() is not None and "Address already in use" in log:
            continue  # lost a port race, try another port
        exited = proc.poll() is not None
        if not exited:
            proc.kill()
        proc.wait()
        tail = "\n".join(log.splitlines()[-80:])
        what = (f"exited with code {proc.returncode} at start" if exited
                else f"did not answer PING within {start_deadline}s (exit code {proc.returncode})")
        raise ServerStartError(f"redis-server{' with the module' if module else ''} {what}; log tail:\n{tail}")
    raise ServerStartError("could not find a free port for redis-server")


def _answers_ping(proc, port, start_deadline=START_DEADLINE, poll=0.05):
    deadline = time.monotonic() + start_deadline
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            c = RawConnection(port, timeout=2)
            try:
                if c.call("PING") == "PONG":
                    return True
            finally:
                c.close()
        except OSError:
            pass
        time.sleep(poll)
    return False


class Clients:
    """What a test holds of one server process (`host`, `port`, `logfile`): the clients it opened,
    closed together, and the server's log. Shared by conftest's Server and cluster's Node."""

    host = "127.0.0.1"

    def client(self, decode=True, **kw):
        """A redis-py client of this server alone (a cluster's redirects are not followed)."""
        import redis  # not at the top: bench and soak use the rest without redis-py

        kw.setdefault("socket_timeout", SOCKET_TIMEOUT)
        kw.setdefault("protocol", 2)
        c = redis.Redis(host=self.host, port=self.port, decode_responses=decode, **kw)
        self._opened().append(c)
        return c

    def raw(self):
        c = RawConnection(self.port)
        self._opened().append(c)
        return c

    def close_clients(self):
        for c in self._opened():
            try:
                c.close()
            except Exception:
                pass
        self._clients = []

    def _opened(self):
        if not hasattr(self, "_clients"):
            self._clients = []
        return self._clients

    def log(self):
        return _read(self.logfile)

    def log_tail(self, n=80):
        return "\n".join(self.log().splitlines()[-n:])


def _read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def rss_kb(pid):
    """The resident memory (VmRSS) of a live process, in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"VmRSS not found for pid {pid}")
