"""Registrations whose executions wait (an `async def` step, docs/python-api.md#async-def-steps)
while they are unregistered or upgraded (docs/commands.md#rgunregister,
docs/commands.md#rgpydumpsessions): `abortpending` aborts the waiting execution, an upgrade lists
the old session as dead at once, an unregistered stream registration starts no other batch.

Every wait is a polling loop with a generous deadline; the few sleeps check that something does
NOT happen, which holds whatever the timing.
"""

import threading
import time

from conftest import REPLY_DEADLINE, call, pyexecute, wait_until
from test_registrations_keys import register_one, stats as stats_of
from test_registrations_manage import sessions

# Each event's execution waits (its record is parked) until the key `gate` exists.
WAITING_KEYS = """
import asyncio
async def wait(x):
    execute('SET', 'started:' + x['key'], '1')
    while not execute('EXISTS', 'gate'):
        await asyncio.sleep(0.05)
    execute('SET', 'finished:' + x['key'], '1')
    return x['key']
GB().map(wait).register(prefix='w*', mode='async')
"""

# A stream registration of batches of 2 whose records wait for `gate`, then go to `ok`.
WAITING_STREAM = """
import asyncio
async def wait(e):
    execute('RPUSH', 'started', e['id'])
    while not execute('EXISTS', 'gate'):
        await asyncio.sleep(0.05)
    execute('RPUSH', 'ok', e['id'])
    return e
GB('StreamReader').map(wait).register(prefix='st', batch=2{extra})
"""


def test_unregister_with_abortpending_aborts_a_waiting_execution(r):
    rid = register_one(r, WAITING_KEYS)
    r.set("w1", "v")
    wait_until(lambda: r.exists("started:w1"), what="the execution to start waiting")
    assert r.execute_command("RG.UNREGISTER", rid, "abortpending") == "OK"
    r.set("gate", "1")
    time.sleep(0.5)
    assert r.get("finished:w1") is None


def test_after_an_upgrade_the_old_session_of_a_waiting_execution_is_dead_at_once(r):
    register_one(r, WAITING_KEYS, "ID", "s1")
    r.set("w1", "v")
    wait_until(lambda: r.exists("started:w1"), what="the execution to start waiting")
    assert pyexecute(r, "GB().register(prefix='n*')", "ID", "s1", "UPGRADE") == "OK"
    dead = sessions(r, "DEAD")
    assert len(dead) == 1 and dead[0][0:2] == ["ID", "s1"] and dead[0][8:10] == ["dead", "true"], dead
    r.set("gate", "1")
    wait_until(lambda: r.get("finished:w1") == "1", what="the old session's execution to finish")
    wait_until(lambda: sessions(r, "DEAD") == [], what="the dead session to go")


def first_batch_waiting(r, entries, extra=""):
    """Registers WAITING_STREAM, adds `entries` entries, and waits until its first batch waits."""
    rid = register_one(r, WAITING_STREAM.format(extra=extra))
    for i in range(entries):
        r.xadd("st", {"n": i})
    wait_until(lambda: r.llen("started") == 2, what="the first batch to wait")
    return rid


def test_an_unregistered_stream_registration_starts_no_other_batch(r):
    rid = first_batch_waiting(r, 6, extra=", trimStream=False")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    r.set("gate", "1")
    wait_until(lambda: r.llen("ok") == 2, what="the running batch to finish")
    time.sleep(0.5)
    assert r.llen("started") == 2 and r.xlen("st") == 6


def registered_waiting(r):
    """The ids of registered executions not yet done."""
    return [e[1] for e in r.execute_command("RG.DUMPEXECUTIONS")
            if dict(zip(e[::2], e[1::2]))["registered"] == 1 and dict(zip(e[::2], e[1::2]))["status"] != "done"]


def test_unregister_without_abortpending_lets_a_waiting_execution_finish(server, r):
    """It runs to its end and answers those waiting for its results; then, as in RedisGears (the
    registration's last reference gone), it is dropped with the registration's other executions."""
    rid = register_one(r, WAITING_KEYS)
    r.set("w1", "v")
    wait_until(lambda: r.exists("started:w1"), what="the execution to start waiting")
    (eid,) = registered_waiting(r)
    got = {}
    waiter = threading.Thread(target=lambda: got.update(reply=call(server, "RG.GETRESULTSBLOCKING", eid)),
                              daemon=True)
    waiter.start()
    wait_until(lambda: r.info("clients")["blocked_clients"] >= 1, what="the waiter to block")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    r.set("gate", "1")
    waiter.join(REPLY_DEADLINE)
    assert got.get("reply") == [[b"w1"], []], got
    assert r.get("finished:w1") == "1"
    wait_until(lambda: registered_waiting(r) == [] and r.execute_command("RG.DUMPEXECUTIONS") == [],
               what="the finished execution to be dropped")


def test_pausing_a_stream_registration_while_a_batch_waits(r):
    rid = first_batch_waiting(r, 4)
    assert r.execute_command("RG.PAUSEREGISTRATIONS", rid) == "OK"
    assert stats_of(r, rid)["status"] == "PAUSED"
    r.set("gate", "1")
    wait_until(lambda: r.llen("ok") == 2, what="the running batch to finish")
    r.xadd("st", {"n": 4})
    r.xadd("st", {"n": 5})
    time.sleep(0.5)  # paused: nothing more is processed, whatever the timing
    assert r.llen("ok") == 2 and stats_of(r, rid)["status"] == "PAUSED"
    assert r.xlen("st") == 4  # the finished batch was acknowledged and trimmed
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", rid) == "OK"
    wait_until(lambda: r.llen("ok") == 6, what="the entries left while paused")
    assert stats_of(r, rid)["status"] == "OK"
    wait_until(lambda: r.xlen("st") == 0, what="every batch to be trimmed")


def test_abort_policy_while_entries_wait_with_trimming_off(r):
    rid = register_one(r, """
import asyncio
async def wait(e):
    while not execute('EXISTS', 'gate'):
        await asyncio.sleep(0.05)
    if 'bad' in e['value']:
        raise Exception('bad entry')
    execute('RPUSH', 'ok', e['id'])
    return e
GB('StreamReader').map(wait).register(prefix='st', batch=1, onFailedPolicy='abort', trimStream=False)
""")
    r.xadd("st", {"bad": 1}, id="1-0")
    for i in range(2, 6):
        r.xadd("st", {"good": 1}, id=f"{i}-0")
    r.set("gate", "1")
    wait_until(lambda: stats_of(r, rid)["status"] == "ABORTED", what="the registration to abort")
    time.sleep(0.5)  # aborted: nothing more is processed, whatever the timing
    d = stats_of(r, rid)
    assert (d["numTriggered"], d["numFailures"], d["status"]) == (1, 1, "ABORTED"), d
    assert r.llen("ok") == 0 and r.xlen("st") == 5
    pending = r.xpending("st", "__gears_consumer_group__")
    assert pending["pending"] == 1  # the failed entry stays unacknowledged
