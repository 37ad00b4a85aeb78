"""What a script's session sees: the names it starts with (`session_env`), log and print(),
configuration, atomic blocks, time events and the hook helpers.

A part of `gears`, run in its namespace (see `gears._include`): the names it uses are the
module's."""

import _redisgears


_LEVELS = ('debug', 'verbose', 'notice', 'warning')


def log(*args, **kwargs):
    _check_kwargs('log', kwargs, ('level',))
    if 'level' in kwargs:
        args = args + (kwargs.pop('level'),)
    if len(args) == 0 or len(args) > 2:
        raise error('log function must get a log message as input')
    msg, level = (args + ('notice',))[:2]
    if len(args) == 2 and msg in _LEVELS and level not in _LEVELS:
        # The legacy log(level, msg) form.
        _redisgears.log('log(level, msg) is deprecated, use log(msg, level) instead', 'warning')
        msg, level = level, msg
    if not isinstance(msg, str):
        raise error('Log message must be a string')
    if not isinstance(level, str):
        raise error('Log level must be a sting (debug/verbose/notice/warning)')
    if level not in _LEVELS:
        raise error('Log level should be one of the following : debug,verbose,notice,warning')
    _redisgears.log('GEARS: ' + msg, level)


class _LogWriter:
    """sys.stdout and sys.stderr: print() output goes to the Redis log, a line at a time."""

    def __init__(self):
        self._pending = ''

    def write(self, text):
        text = str(text)
        lines = (self._pending + text).split('\n')
        self._pending = lines.pop()
        for line in lines:
            _redisgears.log(line, 'notice')
        return len(text)

    def flush(self):
        if self._pending:
            _redisgears.log(self._pending, 'notice')
            self._pending = ''

    def isatty(self):
        return False


def session_env():
    """The names every script starts with; each script gets its own copy."""
    import redisgears
    env = {
        '__name__': 'not_main',
        'GearsBuilder': GearsBuilder,
        'GB': GB,
        'execute': execute,
        'log': log,
        'flat_error': redisgears.flatError,
        'configGet': redisgears.config_get,
        'gearsConfigGet': gearsConfigGet,
        'hashtag': redisgears.getMyHashTag,
        'atomic': atomic,
        'isAsyncAllow': _redisgears.is_async_allow,
        'gearsFuture': gearsFuture,
        'createFuture': createFuture,
        'setFutureResults': setFutureResults,
        'setFutureException': setFutureException,
        'runCoroutine': runCoroutine,
        'registerTE': redisgears.registerTimeEvent,
        'call_next': redisgears.callNext,
        'get_command': redisgears.getCommand,
        'override_reply': redisgears.overrideReply,
        'copy': __import__('copy'),
        'asyncio': __import__('asyncio'),
        'createKeysOnlyReader': createKeysOnlyReader,
        'shardReaderCallback': shardReaderCallback,
        'redisgears': redisgears,
        'rg': redisgears,
        'Log': _deprecated('Log', 'log', log),
        'ConfigGet': _deprecated('ConfigGet', 'configGet', redisgears.config_get),
        'GearsConfigGet': _deprecated('GearsConfigGet', 'gearsConfigGet', gearsConfigGet),
    }
    return env


def configGet(*args):
    if len(args) != 1:
        raise error('get_config function must get a single key input')
    if not isinstance(args[0], str):
        raise error('get_config key must be a string')
    return _redisgears.config_get(args[0])


def gearsConfigGet(key, default=None):
    value = configGet(key)
    return default if value is None else value


def _deprecated(old, new, func):
    def wrapper(*args, **kwargs):
        _redisgears.log('%s is deprecated, use %s instead' % (old, new), 'warning')
        return func(*args, **kwargs)
    wrapper.__name__ = old
    return wrapper


class atomic:
    """`with atomic():` holds the Redis lock for the block; its writes replicate as one unit."""

    def __enter__(self):
        _redisgears.atomic_enter()
        return self

    def __exit__(self, *exc):
        _redisgears.atomic_exit()
        return False


def registerTE(*args, **kwargs):
    if _script_threads:
        raise error('can not create time event on a python created thread')
    _check_kwargs('registerTE', kwargs, ('seconds', 'callback', 'keyName'))
    args = list(args)
    for name in ('seconds', 'callback', 'keyName')[len(args):]:
        if name not in kwargs:
            break
        args.append(kwargs[name])
    if len(args) < 2 or len(args) > 3:
        raise error('not enough arguments for time event')
    seconds, callback = args[0], args[1]
    keyName = args[2] if len(args) == 3 else None
    if type(callback) is not _FunctionType:
        raise error('callback must be a function')
    if not isinstance(seconds, int):
        raise error('time argument must be a long')
    if not isinstance(keyName, str):
        keyName = None
    return _redisgears.register_time_event(seconds, callback, keyName)


def hashtag():
    return _redisgears.hashtag()


def call_next(*args):
    return _redisgears.call_next(*args)


def get_command():
    return _redisgears.get_command()


def override_reply(*args):
    if len(args) != 1:
        raise error('Override reply must get a single argument')
    return _redisgears.override_reply(args[0])


def raise_flat_error(*args):
    if len(args) != 1:
        raise error('not enough arguments for time flat error')
    raise flat_error(args[0])
