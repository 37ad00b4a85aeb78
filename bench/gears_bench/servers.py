"""The processes a benchmark run starts: redis-servers (started by the test suite's harness,
tests/harness.py, with the options bench needs on top) and helper processes (pinger, writers,
subscriber, consumer). Every one of them is killed when the run ends, however it ends."""

import atexit
import json
import os
import subprocess
import sys
import tempfile
import time

from .common import CMD_TIMEOUT, ENTRY, HOST, ROOT, START_TIMEOUT

sys.path.insert(0, os.path.join(ROOT, "tests"))
import harness  # noqa: E402  (the test suite's server launcher, not a package)

REDIS_SERVER = harness.REDIS_SERVER
module_path = harness.module_path

SERVER_ARGS = ("--enable-module-command", "yes",  # P5 loads the module into a running server
               # Lua anchors run for seconds: let them finish while other clients wait
               # (instead of getting -BUSY after 5 s), so P4 sees the real blocking time.
               "--busy-reply-threshold", "600000")

_CHILDREN = []  # Popen objects started by this process


def _forget(proc):
    if proc in _CHILDREN:
        _CHILDREN.remove(proc)


def _stop(proc, timeout):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    _forget(proc)


def kill_children():
    for p in list(_CHILDREN):
        try:
            _stop(p, 5)
        except Exception:
            _forget(p)


atexit.register(kill_children)


def on_signal(signum, _frame):
    # SystemExit unwinds the run (its finally blocks) and ends in kill_children at exit.
    raise SystemExit(128 + signum)


class ServerDied(RuntimeError):
    pass


class Server:
    """One redis-server on 127.0.0.1:<free port>, optionally with the module loaded at start."""

    def __init__(self, workdir, name, module=None, module_args=()):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)
        self.logfile = os.path.join(self.dir, "redis.log")
        started_at = time.perf_counter()
        try:
            self.proc, self.port = harness.launch(
                module, [str(a) for a in module_args], self.dir, self.logfile, extra_args=SERVER_ARGS,
                start_deadline=START_TIMEOUT, poll=0.01, started=_CHILDREN.append)
        except harness.ServerStartError as e:
            raise ServerDied(f"{name}: {e}") from None
        self.ready_after = time.perf_counter() - started_at  # P5 records it

    def client(self, decode=False, timeout=CMD_TIMEOUT):
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=timeout,
                           socket_connect_timeout=10, decode_responses=decode)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self, what=""):
        if not self.alive():
            raise ServerDied(f"{self.name}: redis-server died (exit {self.proc.returncode}) {what}\n"
                             + self.log_tail())

    def rss_kb(self):
        return harness.rss_kb(self.pid)

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        _stop(self.proc, 10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Child:
    """A helper process (bench/run.py with a hidden flag: pinger, writer, subscriber, consumer)
    that prints 'ready', waits for one line on stdin, and prints one JSON line at the end."""

    def __init__(self, *args, what="helper process"):
        self.what = what
        self.p = subprocess.Popen([sys.executable, ENTRY, *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        _CHILDREN.append(self.p)

    def wait_ready(self):
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{self.what} did not start: {line!r}")

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def result(self, timeout=CMD_TIMEOUT):
        out, _ = self.p.communicate(timeout=timeout)
        if self.p.returncode != 0:
            raise RuntimeError(f"{self.what} exited with {self.p.returncode}")
        return json.loads(out.strip().splitlines()[-1])

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)
        _forget(self.p)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
