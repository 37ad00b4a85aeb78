"""What the pytest suite (conftest.py) and `make soak` (bench/soak.py) share: where the module is,
a redis-server with it on a free port, and a RESP client that keeps the exact reply types.
No pytest here: soak runs outside it."""

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


def launch(module, module_args, workdir, logfile, wait=True):
    """Starts redis-server with the module on a free port and returns (process, port), once it
    answers PING unless `wait` is false. Raises ServerStartError (the process is gone then)."""
    for _attempt in range(5):
        port = free_port()
        if os.path.exists(logfile):
            os.unlink(logfile)
        cmd = [
            REDIS_SERVER,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--loadmodule", module, *module_args,
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
            "--enable-debug-command", "yes",
            "--logfile", logfile,
            "--daemonize", "no",
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait or _answers_ping(proc, port):
            return proc, port
        log = _read(logfile)
        if proc.poll() is not None and "Address already in use" in log:
            continue  # lost a port race, try another port
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        tail = "\n".join(log.splitlines()[-80:])
        raise ServerStartError(f"redis-server with the module did not answer PING within {START_DEADLINE}s "
                               f"(exit code {proc.returncode}); log tail:\n{tail}")
    raise ServerStartError("could not find a free port for redis-server")


def _answers_ping(proc, port):
    deadline = time.monotonic() + START_DEADLINE
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
        time.sleep(0.05)
    return False


def _read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
