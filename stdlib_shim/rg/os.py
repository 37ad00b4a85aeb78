"""Sandbox stand-in for `os`: what pure stdlib modules need, and no host access.

Paths, constants and `urandom` work; the environment is empty; everything that would touch the
file system, processes or the host raises OSError(ENOSYS).
"""

import abc as _abc
import sys as _sys
from errno import ENOSYS as _ENOSYS

import _redisgears

name = 'posix'
sep = '/'
altsep = None
extsep = '.'
pathsep = ':'
defpath = '/bin:/usr/bin'
linesep = '\n'
devnull = '/dev/null'
curdir = '.'
pardir = '..'
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
error = OSError
environ = {}
environb = {}
supports_bytes_environ = False
_have_functions = []


def getenv(key, default=None):
    return default


def urandom(size):
    return _redisgears.urandom(size)


def cpu_count():
    return None


def strerror(code):
    return 'error %d' % code


def fspath(path):
    if isinstance(path, (str, bytes)):
        return path
    path_type = type(path)
    try:
        path_repr = path_type.__fspath__(path)
    except AttributeError:
        if hasattr(path_type, '__fspath__'):
            raise
        raise TypeError('expected str, bytes or os.PathLike object, not ' + path_type.__name__)
    if isinstance(path_repr, (str, bytes)):
        return path_repr
    raise TypeError('expected {}.__fspath__() to return str or bytes, not {}'.format(
        path_type.__name__, type(path_repr).__name__))


def fsencode(filename):
    filename = fspath(filename)
    return filename.encode('utf-8', 'surrogateescape') if isinstance(filename, str) else filename


def fsdecode(filename):
    filename = fspath(filename)
    return filename.decode('utf-8', 'surrogateescape') if isinstance(filename, bytes) else filename


class PathLike(_abc.ABC):
    @_abc.abstractmethod
    def __fspath__(self):
        raise NotImplementedError

    @classmethod
    def __subclasshook__(cls, subclass):
        if cls is PathLike:
            return hasattr(subclass, '__fspath__')
        return NotImplemented


def _unavailable(name):
    def unavailable(*args, **kwargs):
        raise OSError(_ENOSYS, '%s is not available in the rustgears sandbox' % name)
    unavailable.__name__ = name
    return unavailable


for _name in ('stat', 'lstat', 'fstat', 'open', 'close', 'read', 'write', 'listdir', 'scandir', 'walk',
              'getcwd', 'getcwdb', 'chdir', 'mkdir', 'makedirs', 'rmdir', 'remove', 'unlink', 'rename',
              'replace', 'system', 'popen', 'kill', 'getpid', 'getppid', 'getuid', 'geteuid', 'getgid',
              'getegid', 'getlogin', 'uname', 'putenv', 'unsetenv', 'umask', 'access', 'chmod', 'chown',
              'link', 'symlink', 'readlink', 'truncate', 'utime', 'execv', 'execve', 'spawnv', 'waitpid',
              'times', 'get_terminal_size', 'device_encoding', 'isatty', 'pipe', 'dup', 'dup2'):
    globals()[_name] = _unavailable(_name)
del _name

import posixpath as path  # noqa: E402  (needs the names above)

_sys.modules['os.path'] = path
