"""The machine and the versions a run is recorded with: CPUs, memory, load before and after,
how busy the CPUs were just before the run (the machine is shared), and the versions of Redis,
the module (with its build time and hash), the source, rustc, Python and redis-py."""

import datetime
import hashlib
import os
import platform
import shutil
import subprocess
import time

from .common import REDIS_BENCHMARK, ROOT, as_str
from .servers import REDIS_SERVER


def sh(*cmd):
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over `seconds` (from /proc/stat), before we start anything:
    the benchmark shares the machine with whatever else runs."""
    def sample():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return idle, sum(vals)
    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
        return 1.0 - (i1 - i0) / max(t1 - t0, 1)
    except (OSError, ValueError, IndexError):
        return None


def _proc_field(path, prefix):
    """The text after the first ':' of the first line of `path` starting with `prefix`."""
    try:
        with open(path) as f:
            for line in f:
                if line.lower().startswith(prefix.lower()):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info():
    cpu = _proc_field("/proc/cpuinfo", "model name")
    mem = _proc_field("/proc/meminfo", "MemTotal:")
    if mem is not None:
        mem = f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB"
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {"nproc": nproc, "cpu_model": cpu or platform.processor() or "unknown", "memory": mem,
            "kernel": platform.release(), "loadavg_start": os.getloadavg(), "cpu_busy_before": cpu_busy()}


def rustc_version():
    for cand in (shutil.which("rustc"), os.path.expanduser("~/.cargo/bin/rustc")):
        if cand and os.path.exists(cand):
            v = sh(cand, "--version")
            if v:
                return v
    return "unavailable"


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _python_version():
    return f"{platform.python_implementation()} {platform.python_version()}"


def _module_version(server):
    """The module's name and version as MODULE LIST of a running server has it."""
    try:
        c = server.client()
        found = None
        for m in c.execute_command("MODULE", "LIST"):
            if isinstance(m, list):
                m = dict(zip(m[::2], m[1::2]))
            if as_str(m.get(b"name", m.get("name"))) == "rg":
                ver = int(m.get(b"ver", m.get("ver")))
                found = f"rg {ver} ({ver // 10000}.{ver // 100 % 100}.{ver % 100})"
        c.close()
        return found
    except Exception as e:
        return f"unknown ({e})"


def _source_and_build(v, module):
    """The git commit of the source tree (marked when it has uncommitted changes) and the
    hash and build time of the module file."""
    commit = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD")
    if commit and "fatal" not in commit:
        dirty = sh("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no")
        v["git"] = commit + (" (uncommitted changes)" if dirty else "")
    v["module_sha256"] = file_sha256(module)[:16]
    try:
        st = os.stat(module)
        v["module_built"] = datetime.datetime.fromtimestamp(st.st_mtime).astimezone().isoformat(timespec="seconds")
    except OSError:
        pass


def versions(main_server, module):
    v = {"redis_server": sh(REDIS_SERVER, "--version"), "redis_benchmark": sh(REDIS_BENCHMARK, "--version"),
         "rustc": rustc_version(), "python": _python_version(), "module_path": module}
    try:
        import redis

        v["redis_py"] = redis.__version__
    except Exception:
        pass
    module_version = _module_version(main_server)
    if module_version is not None:
        v["module"] = module_version
    _source_and_build(v, module)
    return v


def versions_fallback(module):
    """The versions when the main server did not start (no MODULE LIST to ask)."""
    return {"redis_server": sh(REDIS_SERVER, "--version"), "rustc": rustc_version(), "python": _python_version(),
            "module_path": module, "module": "unknown (server did not start)"}
