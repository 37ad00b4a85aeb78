"""The RedisGears 1.x Python API, over the native `_redisgears` module.

Everything a script sees as a global comes from `session_env()` (`environment`). Operations
validate their arguments (`validate`), with RedisGears' exact texts, and append `(op,
callbacks...)` steps to the builder (`builder`); `run()` hands the reader and steps to the
engine, which does the iteration in Rust. `futures`: records that wait. This module keeps the
exceptions, the sandbox's import finder and its one-thread stand-in.
"""

import _codecs
import sys as _sys

import _redisgears


class error(Exception):
    pass


class forcestopped(BaseException):
    # A BaseException so that `except Exception:` cannot swallow an abort.
    pass


class flat_error(Exception):
    pass


_redisgears.register_types(error, forcestopped, flat_error)



class _LeftOut:
    """The last importer: a standard library module that no importer before it found is left
    out of the sandbox on purpose (docs/sandbox.md says which and why), and the error says so,
    where a bare "No module named" would read like a typo."""

    _names = _sys.stdlib_module_names

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition('.')[0] in cls._names:
            raise ModuleNotFoundError("No module named %r (not available in the rustgears sandbox)" % name, name=name)
        if '.' not in name:
            # Not the standard library: a package a RedisGears script would have installed with
            # REQUIREMENTS (redis, numpy, requests, ...), which rustgears cannot install.
            raise ModuleNotFoundError("No module named %r (not available in the rustgears sandbox: "
                                      "REQUIREMENTS/pip packages are not supported)" % name, name=name)
        return None


_sys.meta_path.append(_LeftOut)


# How many "threads" of the script are running: the `_thread` stand-in runs a new thread's
# function at once, on the worker, and GB() refuses to start there as RedisGears refuses it on a
# thread the script created.
_script_threads = 0


def _one_thread():
    """Scripts have one thread; the `_thread` stand-in runs a thread's function at once. Its
    lock pretended that a blocking `acquire()` of a held lock succeeded, which sent
    `queue.Queue().get()` on an empty queue round a loop that only the memory limit ended: no
    other thread can release the lock, so the wait is refused. Waits with a timeout still time
    out. The function of a new thread runs marked as a script thread."""
    import _thread

    def acquire(self, blocking=True, timeout=-1):
        if not self.locked_status:
            self.locked_status = True
            return True
        if blocking and timeout < 0:
            raise RuntimeError('deadlock: the lock is held and no other thread can release it (scripts have one thread)')
        if blocking and timeout > 0:
            import time
            time.sleep(timeout)
        return False

    _thread.LockType.acquire = _thread.LockType.__enter__ = acquire

    def marked(start):
        def start_thread(function, *args, **kwargs):
            def script_thread(*a, **k):
                global _script_threads
                _script_threads += 1
                try:
                    return function(*a, **k)
                finally:
                    _script_threads -= 1
            return start(script_thread, *args, **kwargs)
        return start_thread

    _thread.start_new_thread = marked(_thread.start_new_thread)
    _thread.start_joinable_thread = marked(_thread.start_joinable_thread)


_one_thread()


def _find_encoding(name):
    """Codecs beyond the interpreter's built-in few are found by the `encodings` package once it
    is imported, which nothing does at start-up (it would cost every interpreter): the first
    lookup that misses imports it (`pickle` protocol 0 needs raw_unicode_escape)."""
    import codecs
    import encodings
    codecs.unregister(_find_encoding)
    return encodings.search_function(name)


_codecs.register(_find_encoding)


def _include(part):
    """Runs `gears/<part>.py` in this module's namespace. The parts are split by job for their
    readers; at run time they are one namespace, as before: the one scripts see (`gears.X`,
    classes shown as `gears.GearsBuilder`), and the one the pristine machinery checks after
    every job (python/pristine.rs: a namespace more per part measured 14 % of RG.PYEXECUTE's
    throughput)."""
    import _imp
    exec(_imp.get_frozen_object('gears.' + part), globals())


for _part in ('validate', 'builder', 'futures', 'environment'):
    _include(_part)
del _part
