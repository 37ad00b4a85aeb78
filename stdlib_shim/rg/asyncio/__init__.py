"""Sandbox stand-in for `asyncio`: the CPython 3.12 API over one event loop that Redis drives.

There are no sockets, selectors or threads, so the loop never blocks and never runs by itself:
the worker calls `_loop._run_once()` whenever `_redisgears.loop_wake()` or the previous turn said
the loop is due. Every callback carries the execution ("owner") current when it was registered
and runs inside it through `_redisgears.within()`, as CPython callbacks carry their contextvars
context; when an execution ends, `_loop._release()` drops or re-owns what it left behind.
Everything that would reach the host (streams, servers, subprocesses, threads) is refused.
"""

import sys as _sys
import types as _types
from _collections_abc import Coroutine as _Coroutine
from _functools import partial as _partial
from _random import Random as _Random
from collections import deque as _deque
from heapq import heapify as _heapify, heappop as _heappop, heappush as _heappush
from itertools import count as _count
from time import monotonic as _monotonic

import _redisgears

_current_owner = _redisgears.current_owner
_within = _redisgears.within
_wake = _redisgears.loop_wake

FIRST_COMPLETED = 'FIRST_COMPLETED'
FIRST_EXCEPTION = 'FIRST_EXCEPTION'
ALL_COMPLETED = 'ALL_COMPLETED'

_PENDING, _CANCELLED, _FINISHED = 'PENDING', 'CANCELLED', 'FINISHED'
_CO_COROUTINE = 0x80


class CancelledError(BaseException):
    """The operation was cancelled."""


class InvalidStateError(Exception):
    """Invalid internal state of Future or Task."""


class QueueEmpty(Exception):
    """Raised by Queue.get_nowait() on an empty queue."""


class QueueFull(Exception):
    """Raised by Queue.put_nowait() on a full queue."""


TimeoutError = TimeoutError  # the builtin, as since 3.11


# --- handles and the loop ---------------------------------------------------------------------

_hashes = _Random()


class _RandomHash:
    """Handles and futures hash at random. A RustPython set or dict keeps a dead entry for each key
    removed whenever a new key lands on its slot first, and identity hashes land there every time
    (memory is reused): the loop's sets, and the sets of tasks scripts keep, would grow by one
    entry a task. Random slots only rarely hit dead ones, and the next resize clears them."""

    def __hash__(self):
        return self._hash


class Handle(_RandomHash):
    """A callback on its way to the loop: ready, a timer, or a future's done callback."""

    def __init__(self, callback, args, loop, owner):
        self._hash = _hashes.getrandbits(60)
        self._callback = callback
        self._args = args
        self._loop = loop
        self._owner = owner
        self._cancelled = False

    def __repr__(self):
        return '<%s%s %r>' % (type(self).__name__, ' cancelled' if self._cancelled else '', self._callback)

    def cancel(self):
        if not self._cancelled:
            self._cancelled = True
            self._loop._disown(self)
            # The shell may wait in a queue or a future for a while; what it would call (often a
            # whole task) goes now.
            self._callback = self._args = None

    def cancelled(self):
        return self._cancelled


class TimerHandle(Handle):
    def __init__(self, when, callback, args, loop, owner):
        super().__init__(callback, args, loop, owner)
        self._when = when
        self._scheduled = False  # in the loop's heap

    def when(self):
        return self._when

    def cancel(self):
        if not self._cancelled:
            super().cancel()
            if self._scheduled:
                self._loop._timer_cancelled()


def _check_callable(callback, method):
    if not callable(callback):
        raise TypeError('a callable object was expected by %s(), got %r' % (method, callback))


class EventLoop:
    """The interpreter's one loop. It is always running: Redis runs it, a turn at a time."""

    def __init__(self):
        self._ready = _deque()
        self._timers = []  # heap of (when, sequence, TimerHandle): the sequence keeps handles uncompared
        self._sequence = 0
        self._cancelled_timers = 0  # cancelled handles still in the heap
        # (owner,) -> set of its live handles and pending tasks, for _release. Keyed by a tuple,
        # whose hash scatters: owners a constant stride apart would meet _RandomHash's problem.
        self._owned = {}
        self._tasks = set()  # pending tasks, for all_tasks()

    def time(self):
        return _monotonic()

    def call_soon(self, callback, *args, context=None):
        _check_callable(callback, 'call_soon')
        return self._call(callback, args, _current_owner())

    call_soon_threadsafe = call_soon

    def call_later(self, delay, callback, *args, context=None):
        return self.call_at(_monotonic() + delay, callback, *args)

    def call_at(self, when, callback, *args, context=None):
        _check_callable(callback, 'call_at')
        timer = TimerHandle(when, callback, args, self, _current_owner())
        self._own(timer)
        self._sequence += 1
        _heappush(self._timers, (when, self._sequence, timer))
        timer._scheduled = True
        if self._timers[0][2] is timer:
            # Earlier than every timer the worker was told of.
            _wake(max(0.0, when - _monotonic()))
        return timer

    def create_future(self):
        return Future()

    def create_task(self, coro, *, name=None, context=None):
        return Task(coro, name=name)

    def is_running(self):
        return True

    def is_closed(self):
        return False

    def get_debug(self):
        return False

    def set_debug(self, enabled):
        pass

    # The worker's side. Owners are what `_redisgears.current_owner()` returns; None is never released.

    def _call(self, callback, args, owner):
        handle = Handle(callback, args, self, owner)
        self._own(handle)
        self._schedule(handle)
        return handle

    def _schedule(self, handle):
        self._ready.append(handle)
        if len(self._ready) == 1:
            _wake(0.0)

    def _own(self, obj):
        if obj._owner is not None:
            owned = self._owned.get((obj._owner,))
            if owned is None:
                owned = self._owned[(obj._owner,)] = set()
                # The worker releases only the executions that left something on the loop.
                _redisgears.loop_owns(obj._owner)
            owned.add(obj)

    def _disown(self, obj):
        owned = self._owned.get((obj._owner,)) if obj._owner is not None else None
        if owned is not None:
            owned.discard(obj)
            if not owned:
                del self._owned[(obj._owner,)]

    def _timer_cancelled(self):
        self._cancelled_timers += 1
        # Rebuilt once cancelled timers are half the heap: amortised O(1) a cancel, and the
        # sleepers of aborted executions do not pile up.
        if 2 * self._cancelled_timers > len(self._timers):
            self._timers[:] = [entry for entry in self._timers if not entry[2]._cancelled]
            _heapify(self._timers)
            self._cancelled_timers = 0

    def _run_once(self):
        """Runs the handles ready now and the timers due now (what they schedule waits for the
        next turn). Returns when the loop is due again: 0.0, the seconds to the earliest timer, or
        None when nothing is scheduled. Never raises."""
        try:
            self._run_due()
        except BaseException as exc:
            _redisgears.log('asyncio: an event loop turn failed: %r' % (exc,), 'warning')
        try:
            return self._next_due()
        except BaseException:
            return 0.0

    def _run_due(self):
        timers = self._timers
        now = _monotonic()
        while timers and timers[0][0] <= now:
            timer = _heappop(timers)[2]
            timer._scheduled = False
            if timer._cancelled:
                self._cancelled_timers -= 1
            else:
                self._ready.append(timer)
        batch, self._ready = self._ready, _deque()
        try:
            while batch:
                handle = batch.popleft()
                if not handle._cancelled:
                    self._disown(handle)
                    _within(handle._owner, handle._callback, handle._args)
        finally:
            if batch:  # interrupted: the rest keep their turn
                batch.extend(self._ready)
                self._ready = batch

    def _next_due(self):
        if self._ready:
            return 0.0
        timers = self._timers
        while timers and timers[0][2]._cancelled:
            _heappop(timers)
            self._cancelled_timers -= 1
        if not timers:
            return None
        return max(0.0, timers[0][0] - _monotonic())

    def _release(self, owner, cancel):
        """The execution `owner` ended. Aborted (cancel=True): its handles and timers are cancelled
        and its tasks end cancelled without running again. Ended normally: they are handed to no
        owner, so fire-and-forget tasks finish. Never raises."""
        try:
            left = self._owned.pop((owner,), None)
            if not left:
                return
            if cancel:
                tasks = [obj for obj in left if isinstance(obj, Task)]
                for obj in left:
                    if not isinstance(obj, Task):
                        obj.cancel()
                for task in tasks:
                    task._abandon()
            else:
                for obj in left:
                    obj._owner = None
        except BaseException as exc:
            _redisgears.log('asyncio: releasing execution %r failed: %r' % (owner, exc), 'warning')


# --- futures and tasks ------------------------------------------------------------------------

class Future(_RandomHash):
    _asyncio_future_blocking = False  # what isfuture() and Task look for, as in CPython
    _state = _PENDING
    _result = None
    _exception = None
    _cancel_message = None
    _cancelled_exc = None

    __class_getitem__ = classmethod(_types.GenericAlias)

    def __init__(self, *, loop=None):
        self._hash = _hashes.getrandbits(60)
        self._loop = _loop
        self._callbacks = []

    def __repr__(self):
        if self._state == _FINISHED:
            info = 'exception=%r' % (self._exception,) if self._exception is not None else 'result=%r' % (self._result,)
            return '<%s finished %s>' % (type(self).__name__, info)
        return '<%s %s>' % (type(self).__name__, self._state.lower())

    def get_loop(self):
        return self._loop

    def done(self):
        return self._state != _PENDING

    def cancelled(self):
        return self._state == _CANCELLED

    def cancel(self, msg=None):
        if self._state != _PENDING:
            return False
        self._cancel_message = msg
        self._finish(_CANCELLED)
        return True

    def _finish(self, state):
        self._state = state
        callbacks, self._callbacks = self._callbacks, []
        for handle in callbacks:
            if not handle._cancelled:
                self._loop._schedule(handle)

    def _make_cancelled_error(self):
        # A task hands on the CancelledError its coroutine raised, traceback and all.
        exc, self._cancelled_exc = self._cancelled_exc, None
        if exc is None:
            exc = CancelledError() if self._cancel_message is None else CancelledError(self._cancel_message)
        return exc

    def result(self):
        if self._state == _CANCELLED:
            raise self._make_cancelled_error()
        if self._state != _FINISHED:
            raise InvalidStateError('Result is not ready.')
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self):
        if self._state == _CANCELLED:
            raise self._make_cancelled_error()
        if self._state != _FINISHED:
            raise InvalidStateError('Exception is not set.')
        return self._exception

    def add_done_callback(self, fn, *, context=None):
        self._add_callback(fn, _current_owner())

    def _add_callback(self, fn, owner):
        handle = Handle(fn, (self,), self._loop, owner)
        self._loop._own(handle)
        if self._state == _PENDING:
            self._callbacks.append(handle)
        else:
            self._loop._schedule(handle)

    def remove_done_callback(self, fn):
        kept = []
        removed = 0
        for handle in self._callbacks:
            if handle._cancelled:
                continue
            if handle._callback == fn:
                handle.cancel()
                removed += 1
            else:
                kept.append(handle)
        self._callbacks = kept
        return removed

    def set_result(self, result):
        if self._state != _PENDING:
            raise InvalidStateError('%s: %r' % (self._state, self))
        self._result = result
        self._finish(_FINISHED)

    def set_exception(self, exception):
        if self._state != _PENDING:
            raise InvalidStateError('%s: %r' % (self._state, self))
        if isinstance(exception, type):
            exception = exception()
        if isinstance(exception, StopIteration):
            # Raised into a coroutine it would read as a return.
            error = RuntimeError('StopIteration interacts badly with generators and cannot be raised into a Future')
            error.__cause__ = error.__context__ = exception
            exception = error
        self._exception = exception
        self._finish(_FINISHED)

    def __await__(self):
        if not self.done():
            _not_atomic()
            self._asyncio_future_blocking = True
            yield self  # the Task resumes us when we are done
        if not self.done():
            raise RuntimeError("await wasn't used with future")
        return self.result()

    __iter__ = __await__


_current_task = None
# A counter, not an int rebound per task: the module's namespace is put back after every job
# (it is part of the module's machinery, which scripts must not change for each other).
_task_numbers = _count(1)


class Task(Future):
    """Runs a coroutine a step at a time, each step in the owner current when the task was created."""

    def __init__(self, coro, *, loop=None, name=None, context=None, eager_start=False):
        if not iscoroutine(coro):
            raise TypeError('a coroutine was expected, got %r' % (coro,))
        super().__init__()
        self._name = 'Task-%d' % next(_task_numbers) if name is None else str(name)
        self._coro = coro
        self._must_cancel = False
        self._fut_waiter = None
        self._num_cancels_requested = 0
        self._owner = _current_owner()
        self._loop._tasks.add(self)
        self._loop._own(self)
        self._loop._call(self._step, (), self._owner)

    def __repr__(self):
        return '<Task %s name=%r %r>' % (self._state.lower(), self._name, self._coro)

    def get_coro(self):
        return self._coro

    def get_name(self):
        return self._name

    def set_name(self, value):
        self._name = str(value)

    def set_result(self, result):
        raise RuntimeError('Task does not support set_result operation')

    def set_exception(self, exception):
        raise RuntimeError('Task does not support set_exception operation')

    def cancelling(self):
        return self._num_cancels_requested

    def uncancel(self):
        if self._num_cancels_requested > 0:
            self._num_cancels_requested -= 1
            if self._num_cancels_requested == 0:
                self._must_cancel = False
        return self._num_cancels_requested

    def cancel(self, msg=None):
        if self.done():
            return False
        self._num_cancels_requested += 1
        if self._fut_waiter is not None and self._fut_waiter.cancel(msg=msg):
            # Its wakeup throws the CancelledError in. _fut_waiter stays: a task awaited may
            # swallow the cancellation and need another.
            return True
        self._must_cancel = True
        self._cancel_message = msg
        return True

    def _finish(self, state):
        super()._finish(state)
        self._loop._tasks.discard(self)
        self._loop._disown(self)

    def _abandon(self):
        # Its execution was aborted: the coroutine must not run again, but whoever awaits the
        # task learns that it ended.
        self._fut_waiter = None
        if not self.done():
            Future.cancel(self)

    def _step(self, exc=None):
        global _current_task
        if self.done():
            return  # abandoned while this step was on its way
        if self._must_cancel:
            if not isinstance(exc, CancelledError):
                exc = self._make_cancelled_error()
            self._must_cancel = False
        self._fut_waiter = None
        previous, _current_task = _current_task, self
        try:
            result = self._coro.send(None) if exc is None else self._coro.throw(exc)
        except StopIteration as stop:
            if self._must_cancel:  # cancel() came during the last step
                self._must_cancel = False
                Future.cancel(self, self._cancel_message)
            else:
                Future.set_result(self, stop.value)
        except CancelledError as cancelled:
            self._cancelled_exc = cancelled
            Future.cancel(self)
        except BaseException as error:
            # Even an abort or SystemExit ends this task only, never the loop.
            Future.set_exception(self, error)
        else:
            self._await(result)
        finally:
            _current_task = previous

    def _await(self, result):
        blocking = getattr(result, '_asyncio_future_blocking', None)
        if blocking is None:
            if result is None:  # a bare yield (sleep(0)): one turn for the others
                self._loop._call(self._step, (), self._owner)
                return
            error = RuntimeError('Task got bad yield: %r' % (result,))
        elif not blocking:
            error = RuntimeError('yield was used instead of yield from in task %r with %r' % (self, result))
        elif not isinstance(result, Future):
            error = RuntimeError('Task %r got Future %r attached to a different loop' % (self, result))
        elif result is self:
            error = RuntimeError('Task cannot await on itself: %r' % (self,))
        else:
            result._asyncio_future_blocking = False
            # The wakeup runs as this task, whoever resolves the future.
            result._add_callback(self._wakeup, self._owner)
            self._fut_waiter = result
            if self._must_cancel and result.cancel(msg=self._cancel_message):
                self._must_cancel = False
            return
        self._loop._call(self._step, (error,), self._owner)

    def _wakeup(self, future):
        try:
            future.result()
        except BaseException as exc:
            self._step(exc)
        else:
            self._step()


# --- module functions -------------------------------------------------------------------------

def get_event_loop():
    """The interpreter's one loop, which is always running."""
    return _loop


get_running_loop = _get_running_loop = new_event_loop = get_event_loop


def set_event_loop(loop):
    if loop is not None and loop is not _loop:
        raise RuntimeError('the rustgears sandbox has one event loop, asyncio.get_event_loop()')


def current_task(loop=None):
    return _current_task


def all_tasks(loop=None):
    return {task for task in _loop._tasks if not task.done()}


_is_coroutine = object()  # the marker of CPython's asyncio.coroutines


def iscoroutine(obj):
    return isinstance(obj, (_types.CoroutineType, _Coroutine))


def iscoroutinefunction(func):
    while isinstance(func, _partial):
        func = func.func
    func = getattr(func, '__func__', func)
    code = getattr(func, '__code__', None)
    if code is not None and code.co_flags & _CO_COROUTINE:
        return True
    return getattr(func, '_is_coroutine', None) is _is_coroutine


def isfuture(obj):
    return getattr(type(obj), '_asyncio_future_blocking', None) is not None and obj._asyncio_future_blocking is not None


def create_task(coro, *, name=None, context=None):
    return Task(coro, name=name)


def ensure_future(coro_or_future, *, loop=None):
    if isfuture(coro_or_future):
        return coro_or_future
    if iscoroutine(coro_or_future):
        return Task(coro_or_future)
    if hasattr(coro_or_future, '__await__'):
        return Task(_wrap_awaitable(coro_or_future))
    raise TypeError('An asyncio.Future, a coroutine or an awaitable is required')


async def _wrap_awaitable(awaitable):
    return await awaitable


def run_coroutine_threadsafe(coro, loop=None):
    if not iscoroutine(coro):
        raise TypeError('A coroutine object is required')
    return Task(coro)  # one thread: the task is the future


class _Yield:
    def __await__(self):
        _not_atomic()
        yield


def _not_atomic():
    # The Redis lock of an atomic block is not held across a wait (other clients would wait).
    if _redisgears.in_atomic():
        raise Exception('await is not allow inside atomic block')


def _set_result_unless_cancelled(future, result):
    if not future.cancelled():
        future.set_result(result)


def _release_waiter(waiter, *args):
    if not waiter.done():
        waiter.set_result(None)


async def sleep(delay, result=None):
    if delay <= 0:
        await _Yield()
        return result
    future = _loop.create_future()
    timer = _loop.call_later(delay, _set_result_unless_cancelled, future, result)
    try:
        return await future
    finally:
        timer.cancel()


class _GatheringFuture(Future):
    def __init__(self, children):
        super().__init__()
        self._children = children
        self._cancel_requested = False

    def cancel(self, msg=None):
        if self.done():
            return False
        cancelled = False
        for child in self._children:
            if child.cancel(msg=msg):
                cancelled = True
        if cancelled:
            self._cancel_requested = True  # the result becomes a CancelledError once all are done
        return cancelled


def gather(*coros_or_futures, return_exceptions=False):
    if not coros_or_futures:
        outer = _loop.create_future()
        outer.set_result([])
        return outer
    finished = 0

    def on_child_done(child):
        nonlocal finished
        finished += 1
        if outer.done():
            return
        if not return_exceptions:
            if child.cancelled():
                outer.set_exception(child._make_cancelled_error())
                return
            if child.exception() is not None:
                outer.set_exception(child.exception())
                return
        if finished == len(arg_to_fut):
            if outer._cancel_requested:
                outer.set_exception(CancelledError())
                return
            results = []
            for fut in children:
                if fut.cancelled():
                    results.append(fut._make_cancelled_error())
                else:
                    results.append(fut.exception() if fut.exception() is not None else fut.result())
            outer.set_result(results)

    arg_to_fut = {}
    children = []
    for arg in coros_or_futures:
        fut = arg_to_fut.get(arg)
        if fut is None:  # the same awaitable twice runs once
            fut = arg_to_fut[arg] = ensure_future(arg)
            fut.add_done_callback(on_child_done)
        children.append(fut)
    outer = _GatheringFuture(children)  # the callbacks run on a later turn, when it exists
    return outer


def shield(arg):
    inner = ensure_future(arg)
    if inner.done():
        return inner
    outer = _loop.create_future()

    def on_inner_done(inner):
        if outer.cancelled():
            return
        if inner.cancelled():
            outer.cancel()
        elif inner.exception() is not None:
            outer.set_exception(inner.exception())
        else:
            outer.set_result(inner.result())

    def on_outer_done(outer):
        if not inner.done():
            inner.remove_done_callback(on_inner_done)

    inner.add_done_callback(on_inner_done)
    outer.add_done_callback(on_outer_done)
    return outer


async def wait(fs, *, timeout=None, return_when=ALL_COMPLETED):
    if isfuture(fs) or iscoroutine(fs):
        raise TypeError('expect a list of futures, not %s' % type(fs).__name__)
    if not fs:
        raise ValueError('Set of Tasks/Futures is empty.')
    if return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED):
        raise ValueError('Invalid return_when value: %r' % (return_when,))
    fs = set(fs)
    if any(iscoroutine(f) for f in fs):
        raise TypeError('Passing coroutines is forbidden, use tasks explicitly.')
    fs = {ensure_future(f) for f in fs}
    waiter = _loop.create_future()
    timer = _loop.call_later(timeout, _release_waiter, waiter) if timeout is not None else None
    counter = len(fs)

    def on_completion(f):
        nonlocal counter
        counter -= 1
        if (counter <= 0 or return_when == FIRST_COMPLETED
                or return_when == FIRST_EXCEPTION and not f.cancelled() and f.exception() is not None):
            _release_waiter(waiter)

    for f in fs:
        f.add_done_callback(on_completion)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        for f in fs:
            f.remove_done_callback(on_completion)
    done = {f for f in fs if f.done()}
    return done, fs - done


async def _cancel_and_wait(fut):
    waiter = _loop.create_future()
    release = _partial(_release_waiter, waiter)
    fut.add_done_callback(release)
    try:
        fut.cancel()
        await waiter
    finally:
        fut.remove_done_callback(release)


async def wait_for(fut, timeout):
    if timeout is not None and timeout <= 0:
        fut = ensure_future(fut)
        if fut.done():
            return fut.result()
        await _cancel_and_wait(fut)
        try:
            return fut.result()
        except CancelledError as exc:
            raise TimeoutError from exc
    async with Timeout(None if timeout is None else _loop.time() + timeout):
        return await fut


def as_completed(fs, *, timeout=None):
    if isfuture(fs) or iscoroutine(fs):
        raise TypeError('expect an iterable of futures, not %s' % type(fs).__name__)
    done = Queue()
    todo = {ensure_future(f) for f in set(fs)}
    timer = None

    def on_timeout():
        for f in todo:
            f.remove_done_callback(on_completion)
            done.put_nowait(None)  # each waiting caller gets its TimeoutError
        todo.clear()

    def on_completion(f):
        if not todo:
            return
        todo.remove(f)
        done.put_nowait(f)
        if not todo and timer is not None:
            timer.cancel()

    async def wait_for_one():
        f = await done.get()
        if f is None:
            raise TimeoutError
        return f.result()

    for f in todo:
        f.add_done_callback(on_completion)
    if todo and timeout is not None:
        timer = _loop.call_later(timeout, on_timeout)
    return (wait_for_one() for _ in range(len(todo)))


class Timeout:
    """`async with timeout(delay)`: cancels the current task at the deadline and turns that
    cancellation, and only that one, into TimeoutError (the 3.11 API)."""

    def __init__(self, when):
        self._when = when
        self._state = 'created'
        self._timer = None
        self._task = None
        self._cancelling = 0

    def when(self):
        return self._when

    def expired(self):
        return self._state in ('expiring', 'expired')

    def reschedule(self, when):
        if self._state != 'entered':
            raise RuntimeError('Cannot change state of %s Timeout' % self._state)
        self._when = when
        if self._timer is not None:
            self._timer.cancel()
        if when is None:
            self._timer = None
        elif when <= _loop.time():
            self._timer = _loop.call_soon(self._on_timeout)
        else:
            self._timer = _loop.call_at(when, self._on_timeout)

    async def __aenter__(self):
        if self._state != 'created':
            raise RuntimeError('Timeout has already been entered')
        task = current_task()
        if task is None:
            raise RuntimeError('Timeout should be used inside a task')
        self._task = task
        self._cancelling = task.cancelling()
        self._state = 'entered'
        self.reschedule(self._when)
        return self

    async def __aexit__(self, exc_type, exc_val, exc_tb):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._state == 'expiring':
            self._state = 'expired'
            # A cancel() from elsewhere since we entered stays a cancellation.
            if (self._task.uncancel() <= self._cancelling and exc_type is not None
                    and issubclass(exc_type, CancelledError)):
                raise TimeoutError from exc_val
        elif self._state == 'entered':
            self._state = 'exited'
        return None

    def _on_timeout(self):
        self._task.cancel()
        self._state = 'expiring'
        self._timer = None


def timeout(delay):
    return Timeout(None if delay is None else _loop.time() + delay)


def timeout_at(when):
    return Timeout(when)


# --- synchronisation primitives and queues ----------------------------------------------------

class _ContextManagerMixin:
    async def __aenter__(self):
        await self.acquire()
        return None

    async def __aexit__(self, exc_type, exc, tb):
        self.release()


class Event:
    def __init__(self):
        self._waiters = _deque()
        self._value = False

    def is_set(self):
        return self._value

    def set(self):
        if not self._value:
            self._value = True
            for fut in self._waiters:
                if not fut.done():
                    fut.set_result(True)

    def clear(self):
        self._value = False

    async def wait(self):
        if self._value:
            return True
        return await _wait_in(self._waiters)


async def _wait_in(waiters):
    """Waits for a future of `waiters` (a deque that whoever wakes it resolves) to be resolved."""
    fut = _loop.create_future()
    waiters.append(fut)
    try:
        await fut
        return True
    finally:
        waiters.remove(fut)


class Condition(_ContextManagerMixin):
    def __init__(self, lock=None):
        self._lock = Lock() if lock is None else lock
        self.locked = self._lock.locked
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._waiters = _deque()

    async def wait(self):
        if not self.locked():
            raise RuntimeError('cannot wait on un-acquired lock')
        self.release()
        try:
            return await _wait_in(self._waiters)
        finally:
            # The lock is taken back even when cancelled, as the caller's `async with` expects.
            cancelled = None
            while True:
                try:
                    await self.acquire()
                    break
                except CancelledError as exc:
                    cancelled = exc
            if cancelled is not None:
                raise cancelled

    async def wait_for(self, predicate):
        result = predicate()
        while not result:
            await self.wait()
            result = predicate()
        return result

    def notify(self, n=1):
        if not self.locked():
            raise RuntimeError('cannot notify on un-acquired lock')
        for fut in self._waiters:
            if n <= 0:
                break
            if not fut.done():
                n -= 1
                fut.set_result(False)

    def notify_all(self):
        self.notify(len(self._waiters))


class Semaphore(_ContextManagerMixin):
    def __init__(self, value=1):
        if value < 0:
            raise ValueError('Semaphore initial value must be >= 0')
        self._waiters = _deque()
        self._value = value

    def locked(self):
        return self._value == 0 or any(not w.cancelled() for w in self._waiters)

    async def acquire(self):
        # First come, first served: a free permit with live waiters goes to the first of them.
        if not Semaphore.locked(self):
            self._value -= 1
            return True
        fut = _loop.create_future()
        self._waiters.append(fut)
        try:
            try:
                await fut
            finally:
                self._waiters.remove(fut)
        except CancelledError:
            if fut.done() and not fut.cancelled():  # woken, so counted, but leaving
                self._value += 1
            raise
        finally:
            # Newcomers queued behind us for fairness: wake as many as the value allows.
            while self._value > 0 and self._wake_up_next():
                pass
        return True

    def release(self):
        self._value += 1
        self._wake_up_next()

    def _wake_up_next(self):
        for fut in self._waiters:
            if not fut.done():
                self._value -= 1
                fut.set_result(True)
                return True
        return False


class Lock(Semaphore):
    """A semaphore of one permit that knows whether it is held: released, it is not, even before
    the waiter it went to has run, and releasing it again is an error."""

    def __init__(self):
        super().__init__(1)
        self._held = False

    def locked(self):
        return self._held

    async def acquire(self):
        await super().acquire()
        self._held = True
        return True

    def release(self):
        if not self._held:
            raise RuntimeError('Lock is not acquired.')
        self._held = False
        super().release()


class BoundedSemaphore(Semaphore):
    def __init__(self, value=1):
        self._bound_value = value
        super().__init__(value)

    def release(self):
        if self._value >= self._bound_value:
            raise ValueError('BoundedSemaphore released too many times')
        super().release()


class Queue:
    __class_getitem__ = classmethod(_types.GenericAlias)

    def __init__(self, maxsize=0):
        self._maxsize = maxsize
        self._getters = _deque()
        self._putters = _deque()
        self._unfinished_tasks = 0
        self._finished = Event()
        self._finished.set()
        self._init(maxsize)

    def _init(self, maxsize):
        self._queue = _deque()

    def _get(self):
        return self._queue.popleft()

    def _put(self, item):
        self._queue.append(item)

    def _wakeup_next(self, waiters):
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    @property
    def maxsize(self):
        return self._maxsize

    def qsize(self):
        return len(self._queue)

    def empty(self):
        return not self._queue

    def full(self):
        return 0 < self._maxsize <= self.qsize()

    async def _wait(self, waiters, blocked):
        while blocked():
            waiter = _loop.create_future()
            waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                try:
                    waiters.remove(waiter)
                except ValueError:
                    pass
                if not blocked() and not waiter.cancelled():  # woken but leaving: pass the turn on
                    self._wakeup_next(waiters)
                raise

    async def put(self, item):
        await self._wait(self._putters, self.full)
        self.put_nowait(item)

    def put_nowait(self, item):
        if self.full():
            raise QueueFull
        self._put(item)
        self._unfinished_tasks += 1
        self._finished.clear()
        self._wakeup_next(self._getters)

    async def get(self):
        await self._wait(self._getters, self.empty)
        return self.get_nowait()

    def get_nowait(self):
        if self.empty():
            raise QueueEmpty
        item = self._get()
        self._wakeup_next(self._putters)
        return item

    def task_done(self):
        if self._unfinished_tasks <= 0:
            raise ValueError('task_done() called too many times')
        self._unfinished_tasks -= 1
        if self._unfinished_tasks == 0:
            self._finished.set()

    async def join(self):
        if self._unfinished_tasks > 0:
            await self._finished.wait()


class PriorityQueue(Queue):
    def _init(self, maxsize):
        self._queue = []

    def _put(self, item):
        _heappush(self._queue, item)

    def _get(self):
        return _heappop(self._queue)


class LifoQueue(Queue):
    def _init(self, maxsize):
        self._queue = []

    def _put(self, item):
        self._queue.append(item)

    def _get(self):
        return self._queue.pop()


# --- what the sandbox refuses -----------------------------------------------------------------

def _driven_by_redis(what, hint=''):
    def refused(*args, **kwargs):
        raise RuntimeError('the rustgears event loop is driven by Redis; %s is not available%s' % (what, hint))
    return refused


_AWAIT_IT = ' (await the coroutine, or schedule it with asyncio.create_task())'


def _host(what):
    def refused(*args, **kwargs):
        raise PermissionError('%s is not available in the rustgears sandbox' % what)
    return refused


run = _driven_by_redis('asyncio.run()', _AWAIT_IT)
EventLoop.run_until_complete = _driven_by_redis('loop.run_until_complete()', _AWAIT_IT)
for _name in ('run_forever', 'stop', 'close'):
    setattr(EventLoop, _name, _driven_by_redis('loop.%s()' % _name))
for _name in ('open_connection', 'start_server', 'open_unix_connection', 'start_unix_server',
              'create_subprocess_exec', 'create_subprocess_shell', 'to_thread'):
    globals()[_name] = _host('asyncio.%s()' % _name)
for _name in ('run_in_executor', 'set_default_executor', 'create_connection', 'create_server',
              'create_unix_connection', 'create_unix_server', 'create_datagram_endpoint', 'connect_read_pipe',
              'connect_write_pipe', 'connect_accepted_socket', 'start_tls', 'sendfile', 'sock_recv',
              'sock_recv_into', 'sock_recvfrom', 'sock_recvfrom_into', 'sock_sendall', 'sock_sendto',
              'sock_connect', 'sock_accept', 'sock_sendfile', 'add_reader', 'remove_reader', 'add_writer',
              'remove_writer', 'getaddrinfo', 'getnameinfo', 'add_signal_handler', 'remove_signal_handler',
              'subprocess_exec', 'subprocess_shell'):
    setattr(EventLoop, _name, _host('loop.%s()' % _name))
del _name

AbstractEventLoop = BaseEventLoop = EventLoop
_loop = EventLoop()

# `from asyncio.tasks import Task` and friends: the package is all of them.
for _submodule in ('base_events', 'coroutines', 'events', 'exceptions', 'futures', 'locks', 'queues', 'tasks',
                   'timeouts'):
    _sys.modules[__name__ + '.' + _submodule] = globals()[_submodule] = _sys.modules[__name__]
del _submodule
