"""GearsBuilder (GB): operations append `(op, callbacks...)` steps; `run()` hands the reader and
steps to the engine, `register()` to the registry.

A part of `gears`, run in its namespace (see `gears._include`): the names it uses are the
module's."""

import _redisgears


# Native, so that its errors carry no shim frame in tracebacks (as in RedisGears, where it is C).
execute = _redisgears.execute


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
        # The mode rides with the reader's options: 'async' runs on every shard of a cluster.
        if self.reader == 'KeysOnlyReader':
            known = {k: v for k, v in kwargs.items() if k != 'mode'}
            return _run('PythonReader', createKeysOnlyReader(arg, **known), steps, {'mode': mode})
        options = _reader_options(self.reader, arg, kwargs)
        options['mode'] = mode
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
    """RedisGears' ShardsIDReader function, a generator of this shard's id: its node id in
    cluster mode, '1' where `RG.INFOCLUSTER` says `no cluster mode` (as the ShardsIDReader)."""
    yield _redisgears.shard_reader_id()
GB = GearsBuilder
