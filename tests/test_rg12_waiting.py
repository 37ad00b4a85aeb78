"""Registrations whose executions wait (an `async def` step, docs/python-api.md#async-def-steps)
while they are unregistered or upgraded (docs/commands.md#rgunregister,
docs/commands.md#rgpydumpsessions): `abortpending` aborts the waiting execution, an upgrade lists
the old session as dead at once, an unregistered stream registration starts no other batch.

Every wait is a polling loop with a generous deadline; the few sleeps check that something does
NOT happen, which holds whatever the timing.
"""

import time

from conftest import pyexecute, wait_until
from test_registrations_keys import register_one
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


def test_an_unregistered_stream_registration_starts_no_other_batch(r):
    rid = register_one(r, WAITING_STREAM.format(extra=", trimStream=False"))
    for i in range(6):
        r.xadd("st", {"n": i})
    wait_until(lambda: r.llen("started") == 2, what="the first batch to wait")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    r.set("gate", "1")
    wait_until(lambda: r.llen("ok") == 2, what="the running batch to finish")
    time.sleep(0.5)
    assert r.llen("started") == 2 and r.xlen("st") == 6
