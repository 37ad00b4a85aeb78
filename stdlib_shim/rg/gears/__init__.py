"""The RedisGears 1.x Python API, over the native `_redisgears` module.

Everything a script sees as a global comes from `session_env()`. Operations validate their
arguments here, with RedisGears' exact texts, and append `(op, callbacks...)` steps to the builder;
`run()` hands the reader and steps to the engine, which does the iteration in Rust.
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

_FunctionType = type(lambda: 0)


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

READERS = ('KeysReader', 'KeysOnlyReader', 'StreamReader', 'PythonReader', 'ShardsIDReader', 'CommandReader')


def _distance(a, b):
    """Levenshtein distance, for the suggestion of a misspelled keyword argument."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _check_kwargs(function, kwargs, known, named=()):
    """A keyword argument `function` does not take raises the TypeError CPython raises for it
    (with the suggestion of the name meant that recent CPython adds): nothing is silently ignored. `named`
    are the function's named parameters, also worth suggesting."""
    for name in kwargs:
        if name in known:
            continue
        text = '%s() got an unexpected keyword argument %r' % (function, name)
        candidates = sorted(set(known) | set(named))
        close = [c for c in candidates if c.lower() == name.lower()]
        if not close:
            close = sorted((d, c) for c in candidates for d in (_distance(name, c),) if d <= max(1, len(name) // 3))
            close = [c for _, c in close]
        if close:
            text += '. Did you mean %r?' % close[0]
        raise TypeError(text)


# The keyword arguments of run() and register(), by reader (docs/python-api.md).
_RUN_KWARGS = {
    'KeysReader': ('mode', 'noScan', 'readValue'),
    'KeysOnlyReader': ('mode', 'count', 'noScan', 'patternGenerator'),
    'StreamReader': ('mode', 'fromId'),
    'PythonReader': ('mode',),
    'ShardsIDReader': ('mode',),
    'CommandReader': ('mode',),
}
_REGISTER_COMMON = ('mode', 'onRegistered', 'regex')
_REGISTER_KWARGS = {
    'KeysReader': _REGISTER_COMMON + ('eventTypes', 'keyTypes', 'readValue', 'commands'),
    'StreamReader': _REGISTER_COMMON + ('batch', 'duration', 'onFailedPolicy', 'onFailedRetryInterval', 'trimStream'),
    'CommandReader': _REGISTER_COMMON + ('trigger', 'hook', 'keyprefix', 'inorder'),
}


def _check_functions(op, args, count, what=None):
    if len(args) != count:
        raise error('wrong number of args to %s function' % op)
    for f, name in zip(args, what or ('',) * count):
        if type(f) is not _FunctionType:
            raise error('%s %sargument must be a function' % (op, name))


def _zero(value, zero):
    if value:
        return value
    import copy
    return copy.deepcopy(zero)


class GearsBuilder:
    def __init__(self, reader='KeysReader', defaultArg='*', desc=None):
        if _script_threads:
            raise error('Can not create a gearsCtx on a python created thread')
        if not isinstance(reader, str):
            raise error('reader argument must be a string')
        if desc is not None and not isinstance(desc, str):
            raise error('desc argument must be a string')
        if reader not in READERS:
            raise error('The given reader does not exists')
        self.reader = reader
        self.defaultArg = defaultArg
        self.desc = desc
        self.steps = []
        _redisgears.take_plan_id()

    def map(self, *args):
        _check_functions('map', args, 1)
        return _add(self, 'map', args[0])

    def filter(self, *args):
        _check_functions('filter', args, 1)
        return _add(self, 'filter', args[0])

    def foreach(self, *args):
        _check_functions('foreach', args, 1)
        return _add(self, 'foreach', args[0])

    def flatmap(self, *args):
        _check_functions('flatmap', args, 1)
        return _add(self, 'flatmap', args[0])

    def accumulate(self, *args):
        _check_functions('accumulate', args, 1)
        return _add(self, 'accumulate', args[0])

    def repartition(self, *args):
        _check_functions('repartition', args, 1)
        return _add(self, 'repartition', args[0])

    def localgroupby(self, *args):
        _check_functions('groupby', args, 2, ('extractor ', 'reducer '))
        return _add(self, 'localgroupby', args[0], args[1])

    def groupby(self, *args):
        _check_functions('groupby', args, 2, ('extractor ', 'reducer '))
        return _add(self, 'groupby', args[0], args[1])

    def batchgroupby(self, *args):
        if len(args) != 2:
            raise error('wrong number of args to batchgroupby function')
        if type(args[0]) is not _FunctionType:
            raise error('batchgroupby extractor argument must be a function')
        return _add(self, 'batchgroupby', args[0], args[1])

    def collect(self, *args):
        if args:
            raise error('wrong number of args to collect function')
        return _add(self, 'collect')

    def limit(self, *args):
        if len(args) not in (1, 2):
            raise error('wrong number of args to limit function')
        for n in args:
            if type(n) is not int:
                raise error('limit argument must be a number')
        offset = args[1] if len(args) == 2 else 0
        return _add(self, 'limit', args[0], offset)

    # Sugar: expressed with the operations above, as RedisGears does.

    def aggregate(self, zero, seqOp, combOp):
        self.accumulate(lambda a, r: seqOp(_zero(a, zero), r))
        self.collect()
        return self.accumulate(lambda a, r: combOp(_zero(a, zero), r))

    def aggregateby(self, extractor, zero, seqOp, combOp):
        self.localgroupby(lambda r: extractor(r), lambda k, a, r: seqOp(k, _zero(a, zero), r))
        return self.groupby(lambda r: r['key'], lambda k, a, r: combOp(k, _zero(a, zero), r['value']))

    # count and countby are RedisGears' aggregate(0, 1 + a, a + r) and aggregateby(e, 0, ...).
    # The engine counts in Rust; the functions passed along say what it computes and are what
    # RG.GETEXECUTION shows for these steps, as it shows RedisGears' own lambdas.
    def count(self):
        return _add(self, 'count', lambda a, r: 1 + a, lambda a, r: a + r)

    def countby(self, extractor=lambda x: x):
        return _add(self, 'countby', extractor, lambda k, a, r: 1 + a, lambda r: r['key'], lambda k, a, r: r + a)

    def sort(self, reverse=True):
        def add(a, r):
            a.append(r)
            return a

        def merge(a, r):
            a.extend(r)
            return a

        self.aggregate([], add, merge)
        self.map(lambda r: sorted(r, reverse=reverse))
        return self.flatmap(lambda r: r)

    def distinct(self):
        def add(a, r):
            a.add(r)
            return a

        def merge(a, r):
            a.update(r)
            return a

        self.aggregate(set(), add, merge)
        return self.flatmap(lambda s: list(s))

    def avg(self, extractor=lambda x: float(x)):
        self.map(extractor)
        self.aggregate((0, 0), lambda a, r: (a[0] + r, a[1] + 1), lambda a, r: (a[0] + r[0], a[1] + r[1]))
        return self.map(lambda x: x[0] / x[1])

    def register(self, prefix='*', convertToStr=True, collect=True, **kwargs):
        _check_kwargs('register', kwargs, _REGISTER_KWARGS.get(self.reader, _REGISTER_COMMON),
                      ('prefix', 'convertToStr', 'collect'))
        if 'regex' in kwargs:
            _redisgears.log('Using regex argument with register is deprecated and missleading, use prefix instead.',
                            'warning')
            prefix = kwargs.pop('regex')
        steps = _final_steps(self, convertToStr, collect)
        mode = kwargs.get('mode', 'async')
        if not isinstance(mode, str):
            raise error('execution mode must be a string')
        if mode not in ('async', 'async_local', 'sync'):
            raise error('unknown execution mode')
        onRegistered = kwargs.get('onRegistered')
        if onRegistered is not None and type(onRegistered) is not _FunctionType:
            raise error('OnRegistered argument must be a function')
        if self.reader != 'CommandReader' and not isinstance(prefix, str):
            raise error('regex argument must be a string')
        args = _register_args(self.reader, prefix, mode, kwargs)
        return _redisgears.register(self.reader, self.desc, mode, args, steps, onRegistered)

    def run(self, arg=None, convertToStr=True, collect=True, **kwargs):
        _check_kwargs('run', kwargs, _RUN_KWARGS.get(self.reader, ('mode',)), ('arg', 'convertToStr', 'collect'))
        steps = _final_steps(self, convertToStr, collect)
        if not arg:
            arg = self.defaultArg
        mode = kwargs.get('mode', 'async')
        if not isinstance(mode, str):
            raise error('execution mode must be a string')
        if mode not in ('async', 'async_local'):
            raise error('unknown execution mode')
        if self.reader == 'KeysOnlyReader':
            known = {k: v for k, v in kwargs.items() if k != 'mode'}
            return _run('PythonReader', createKeysOnlyReader(arg, **known), steps, {})
        options = _reader_options(self.reader, arg, kwargs)
        return _run(self.reader, arg, steps, options)


def _add(builder, *step):
    builder.steps.append(step)
    return builder


def _final_steps(builder, convertToStr, collect):
    steps = list(builder.steps)
    if convertToStr:
        steps.append(('map', lambda x: str(x)))
    if collect:
        steps.append(('collect',))
    return steps


def _run(reader, arg, steps, options):
    """Outside a script body, `run()` starts an independent execution and returns an asyncio
    future of its `[results, errors]`, which a coroutine may await."""
    done = None
    if not _redisgears.in_body():
        import asyncio
        done = asyncio.get_event_loop().create_future()
    _redisgears.run(reader, arg, steps, options, done)
    return done


def createKeysOnlyReader(pattern='*', count=1000, noScan=False, patternGenerator=None):
    """KeysOnlyReader, as RedisGears builds it: a PythonReader over SCAN (or EXISTS)."""
    def keysOnlyReader():
        p, exact = pattern, noScan
        if patternGenerator is not None:
            p, exact = patternGenerator()
        if exact:
            if execute('EXISTS', p) == 1:
                yield p
            return
        cursor, keys = execute('SCAN', '0', 'MATCH', p, 'COUNT', str(count))
        while True:
            yield from keys
            if cursor == '0':
                return
            cursor, keys = execute('SCAN', cursor, 'MATCH', p, 'COUNT', str(count))
    return keysOnlyReader


def shardReaderCallback():
    """RedisGears' ShardsIDReader function, a generator of this shard's id: RedisGears yields
    '1' where `RG.INFOCLUSTER` says `no cluster mode`, which is always the case here (the
    ShardsIDReader yields the same '1')."""
    yield '1'


def _reader_options(reader, arg, kwargs):
    if reader == 'KeysReader':
        if not isinstance(arg, str):
            raise error('regex argument must be a string')
        noScan = kwargs.get('noScan', False)
        if type(noScan) is not bool:
            raise error('exactMatch value is not boolean')
        readValue = kwargs.get('readValue', True)
        if type(readValue) is not bool:
            raise error('readValue value is not boolean')
        return {'noScan': noScan, 'readValue': readValue}
    if reader == 'PythonReader':
        if arg is None:
            raise error('python reader function is not given')
        if type(arg) is not _FunctionType:
            raise error('pyreader argument must be a function')
        return {}
    if reader == 'StreamReader':
        fromId = kwargs.get('fromId', '0-0')
        if not isinstance(fromId, str):
            raise error('fromId argument must be a string')
        if not isinstance(arg, str):
            raise error('regex argument must be a string')
        return {'fromId': fromId}
    if reader == 'ShardsIDReader':
        return {}
    raise error('Given reader do not support run or not exists')


def _strings(value, not_iterable, not_string):
    if value is None:
        return None
    try:
        items = list(value)
    except TypeError:
        raise error(not_iterable) from None
    for item in items:
        if not isinstance(item, str):
            raise error(not_string)
    return items


_KEY_TYPES = ('empty', 'string', 'list', 'hash', 'set', 'zset', 'module', 'stream')


def _number(kwargs, name, default, message):
    value = kwargs.get(name, default)
    if not isinstance(value, int):
        raise error(message)
    return value


def _register_args(reader, prefix, mode, kwargs):
    """The reader's register() kwargs, checked in RedisGears' order with its texts."""
    if reader == 'KeysReader':
        eventTypes = _strings(kwargs.get('eventTypes'), 'given eventTypes is not iterable',
                              'given event type is not string')
        keyTypes = _strings(kwargs.get('keyTypes'), 'given keyTypes is not iterable', 'given key type is not string')
        if keyTypes is not None and any(t not in _KEY_TYPES for t in keyTypes):
            raise error('unknown key type')
        readValue = kwargs.get('readValue', True)
        if type(readValue) is not bool:
            raise error('readValue is not boolean')
        commands = _strings(kwargs.get('commands'), 'given commands is not iterable',
                            'given command type is not string')
        return {'prefix': prefix, 'eventTypes': eventTypes, 'keyTypes': keyTypes, 'readValue': readValue,
                'commands': commands}
    if reader == 'StreamReader':
        batch = kwargs.get('batch', 1)
        # RedisGears crashes on batch=0; a batch is at least one entry.
        if not isinstance(batch, int) or batch < 1:
            raise error('batch argument must be a number')
        duration = _number(kwargs, 'duration', 0, 'duration argument must be a number')
        policy = kwargs.get('onFailedPolicy', 'continue')
        if not isinstance(policy, str):
            raise error('onFailedPolicy must be a string (Continue/Abort/Retry)')
        policy = policy.lower()
        if policy not in ('continue', 'abort', 'retry'):
            raise error('onFailedPolicy must be Continue/Abort/Retry')
        if mode == 'sync' and policy != 'continue':
            raise error('ExecutionMode sync can only be combined with OnFailedPolicy Continue')
        retry = _number(kwargs, 'onFailedRetryInterval', 1, 'retryInterval argument must be a number')
        trim = kwargs.get('trimStream', True)
        if type(trim) is not bool:
            raise error('pyTrimmStream argument must be a boolean')
        return {'prefix': prefix, 'batch': batch, 'duration': duration, 'onFailedPolicy': policy,
                'retryInterval': retry, 'trimStream': trim}
    if reader == 'CommandReader':
        trigger = kwargs.get('trigger')
        if trigger is not None and not isinstance(trigger, str):
            raise error('trigger argument is not string')
        inorder = kwargs.get('inorder', False)
        if type(inorder) is not bool:
            raise error('inorder argument is be boolean')
        keyprefix = kwargs.get('keyprefix')
        if keyprefix is not None and not isinstance(keyprefix, str):
            raise error('keyprefix argument is not string')
        hook = kwargs.get('hook')
        if hook is not None and not isinstance(hook, str):
            raise error('hook argument is not string')
        if trigger is not None and (keyprefix is not None or hook is not None):
            raise error('trigger argument can not be given with keyprefix or hook')
        if trigger is None and hook is None:
            raise error('no trigger or hook argument was given')
        return {'trigger': trigger, 'hook': hook, 'keyprefix': keyprefix, 'inorder': inorder}
    raise error('given reader does not exists or does not support register')


GB = GearsBuilder


# Native, so that its errors carry no shim frame in tracebacks (as in RedisGears, where it is C).
execute = _redisgears.execute


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


class gearsFuture:
    """A record that waits: a step callback creates one for its record and returns it; whoever
    holds it continues the record later, from any code of the session."""

    _id = None

    def __init__(self, *args):
        if args:
            raise error('Future gets no arguments')
        self._id = _redisgears.future_create(self)

    def continueRun(self, *args):
        id = _future_id(self, 'continueRun')
        if len(args) != 1:
            raise error('Continue function expect an object')
        _redisgears.future_continue(id, True, args[0])

    def continueFailed(self, *args):
        id = _future_id(self, 'continueFailed')
        if len(args) != 1:
            raise error('Continue function expect an object')
        _redisgears.future_continue(id, False, args[0])

    def __del__(self):
        # Dropped uncontinued: its record fails (nothing can continue it any more).
        if self._id is not None:
            _redisgears.future_dropped(self._id)

    def _settle(self, task):
        """Continues with what `task` ended with (its exception fails the record)."""
        try:
            value = task.result()
        except BaseException as e:
            self.continueFailed(e)
        else:
            self.continueRun(value)


def _future_id(f, method):
    """The id of gearsFuture `f`, for its `method`; misuse is told in the user's terms (the
    texts CPython gives for RedisGears' C type), never by an attribute of ours."""
    if not isinstance(f, gearsFuture):
        raise TypeError("descriptor '%s' for 'gearsFuture' objects doesn't apply to a '%s' object"
                        % (method, type(f).__name__))
    id = f._id
    if type(id) is not int:
        raise error('Future object was not created by gearsFuture()')
    return id


def _await_step(coroutine):
    """A step callback returned a coroutine: its record waits for it, on the event loop, in the
    context of the execution running now."""
    import asyncio
    f = gearsFuture()
    asyncio.get_event_loop().create_task(coroutine).add_done_callback(f._settle)
    return f


def _log_failure(task):
    if not task.cancelled() and task.exception() is not None:
        _redisgears.log('GEARS: coroutine failed: %s' % (task.exception(),), 'warning')


def runCoroutine(cr, f=None, delay=0):
    """Runs coroutine `cr` on the event loop after `delay` seconds; with `f` (a gearsFuture), its
    result continues `f`, its exception fails it, and it runs in the context of f's execution."""
    import asyncio

    async def delayed():
        if delay:
            await asyncio.sleep(delay)
        return await cr

    if f is not None and not isinstance(f, gearsFuture):
        raise error('runCoroutine future argument must be a gearsFuture')
    owner = _redisgears.future_owner(_future_id(f, 'runCoroutine')) if f is not None else _redisgears.current_owner()
    previous = _redisgears.swap_owner(owner)
    try:
        task = asyncio.get_event_loop().create_task(delayed() if delay else cr)
        task.add_done_callback(_log_failure if f is None else f._settle)
    finally:
        _redisgears.swap_owner(previous)
    return task


def createFuture():
    import asyncio
    return asyncio.get_event_loop().create_future()


def setFutureResults(f, res):
    f.set_result(res)


def setFutureException(f, exception):
    if not isinstance(exception, BaseException):
        exception = Exception(str(exception))
    f.set_exception(exception)


def hashtag():
    return '06S'


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
