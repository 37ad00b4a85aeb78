"""What an asynchronous registration's queued events survive (docs/python-api.md#durability):
an RDB written while events wait (a graceful SHUTDOWN or SIGTERM, SAVE, BGSAVE) saves them, and
a start-up load of it queues them again; a DEBUG RELOAD or an AOF start does not run them twice;
`sync` registrations lose nothing because they run inside the write.

Only counts are asserted; every wait is a polling loop with a generous deadline. The queue is
made long by a slow step, and a test checks it really was not drained when the server stopped.
"""

import pytest

from conftest import pyexecute, wait_until
from test_registrations_persist import pstart  # noqa: F401 (fixture)

EVENTS = 200

# Each execution does some work, so that the writes below queue far more than a worker drains
# before the server stops.
SLOW = """
def work(x):
    n = 0
    for i in range(60000):
        n += i
    execute('SET', 'done:' + x['key'], '1')
    execute('INCR', 'runs')
    return x
GB('KeysReader').map(work).register(prefix='job:*', eventTypes=['set'], mode='async')
"""


def done(r):
    return len(r.keys("done:*"))


def runs(r):
    return int(r.get("runs") or 0)


def queue_events(r):
    assert pyexecute(r, SLOW) == "OK"
    p = r.pipeline(transaction=False)
    for i in range(EVENTS):
        p.set(f"job:{i}", i)
    p.execute()


def test_a_graceful_shutdown_saves_the_queue_and_a_restart_runs_it(pstart):  # noqa: F811
    s = pstart(extra=("--save", "3600 1"))
    r = s.client()
    queue_events(r)
    assert done(r) < EVENTS // 2, "the queue drained before the server stopped: make the step slower"
    s.restart()  # SIGTERM: Redis saves the RDB and exits
    r = s.client()
    assert "queued events of the loaded data queued again" in s.log()
    wait_until(lambda: done(r) == EVENTS, timeout=120)
    # At least once: an execution running when the RDB was saved may have written already.
    wait_until(lambda: runs(r) >= EVENTS, timeout=30)
    assert runs(r) <= EVENTS + 1


def test_shutdown_nosave_loses_the_queue_as_it_loses_the_data(pstart):  # noqa: F811
    s = pstart(extra=("--save", "3600 1"))
    r = s.client()
    assert pyexecute(r, SLOW) == "OK"
    r.save()
    queue_events(r)
    try:
        r.shutdown(nosave=True)
    except Exception:
        pass
    s.wait_exit()
    s.start()
    r = s.client()
    # The writes that queued the events are gone too: nothing is left half done.
    assert r.keys("job:*") == [] and done(r) == 0 and runs(r) == 0


def test_a_debug_reload_does_not_run_queued_events_twice(pstart):  # noqa: F811
    s = pstart()
    r = s.client()
    queue_events(r)
    assert r.execute_command("DEBUG", "RELOAD") == "OK"
    wait_until(lambda: done(r) == EVENTS, timeout=120)
    assert "queued again" not in s.log()
    assert runs(r) <= EVENTS


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_an_aof_start_does_not_replay_a_stale_queue(pstart, preamble):  # noqa: F811
    s = pstart(extra=("--appendonly", "yes", "--aof-use-rdb-preamble", preamble))
    r = s.client()
    queue_events(r)
    r.execute_command("BGREWRITEAOF")
    wait_until(lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0, timeout=60)
    wait_until(lambda: done(r) == EVENTS, timeout=120)
    before = runs(r)
    s.restart()
    r = s.client()
    assert done(r) == EVENTS and runs(r) == before
    assert "queued again" not in s.log()


def test_sync_registrations_lose_nothing(pstart):  # noqa: F811
    s = pstart()
    r = s.client()
    assert pyexecute(r, "GB('KeysReader').foreach(lambda x: execute('INCR', 'runs'))"
                        ".register(prefix='job:*', eventTypes=['set'], mode='sync')") == "OK"
    for i in range(EVENTS):
        r.set(f"job:{i}", i)
    # Each ran inside its write: nothing was ever queued.
    assert runs(r) == EVENTS
