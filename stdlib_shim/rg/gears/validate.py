"""Argument checks of the builder, run() and register(): RedisGears' order of checks and exact
texts; a keyword argument nobody takes is a TypeError, as in CPython.

A part of `gears`, run in its namespace (see `gears._include`): the names it uses are the
module's."""

_FunctionType = type(lambda: 0)

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
