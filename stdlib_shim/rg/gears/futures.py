"""gearsFuture (a record that waits) and the asyncio helpers of a session: runCoroutine,
createFuture, setFutureResults, setFutureException.

A part of `gears`, run in its namespace (see `gears._include`): the names it uses are the
module's."""

import _redisgears


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
