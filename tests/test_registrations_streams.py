"""StreamReader registrations (docs/python-api.md#register, docs/commands.md#rgdumpregistrations):
batches, duration, trimming, the consumer group, entries written before registering, onFailedPolicy
continue / abort / retry, PAUSE errors, pause and unpause, the pending-events bound, and every error text.

Every wait is a polling loop with a generous deadline; nothing here measures speed.
"""

import time

import pytest

from conftest import assert_gears_error, wait_until
from test_registrations_keys import dump_registrations, lrange, register_one, stats, wait_stats

GROUP = "__gears_consumer_group__"
CONSUMER = "__gears_client__"

# Each execution pushes the ids of its batch, comma-separated, to the list `batches`.
BATCHES = (
    "def rec(a, x):\n"
    "    a = a if a else []\n"
    "    a.append(x['id'])\n"
    "    return a\n"
    "GB('StreamReader').accumulate(rec).foreach(lambda a: execute('RPUSH', 'batches', ','.join(a)))"
    ".register(prefix='st:*'{extra})\n"
)

# Each record's repr goes to the list `recs`.
RECS = "GB('StreamReader').foreach(lambda e: execute('RPUSH', 'recs', repr(e))).register(prefix='st:*'{extra})"

# Records fail while the key `fixed` does not exist and their entry has a field `bad`;
# processed ids go to the list `ok`.
FAILING = (
    "def f(e):\n"
    "    if 'bad' in e['value'] and not execute('EXISTS', 'fixed'):\n"
    "        raise Exception('bad entry')\n"
    "    execute('RPUSH', 'ok', e['id'])\n"
    "GB('StreamReader').foreach(f).register(prefix='st:*'{extra})\n"
)


def status(r, rid):
    return stats(r, rid)["status"]


def wait_status(r, rid, st):
    wait_until(lambda: status(r, rid) == st, what=f"registration status {st}")


def test_records_in_stream_order(r):
    rid = register_one(r, RECS.format(extra=""))
    r.xadd("st:1", {"f": "v", "a": "b"}, id="1-0")
    r.xadd("st:1", {"x": "1"}, id="2-0")
    r.xadd("st:1", {"y": ""}, id="2-1")
    # entries that arrive while an execution runs make up the next batch: 1 to 3 executions
    wait_until(lambda: len(lrange(r, "recs")) == 3, what="three records")
    d = stats(r, rid)
    assert d["numTriggered"] == d["numSuccess"] and 1 <= d["numSuccess"] <= 3, d
    assert lrange(r, "recs") == [
        "{'key': 'st:1', 'id': '1-0', 'value': {'f': 'v', 'a': 'b'}}",
        "{'key': 'st:1', 'id': '2-0', 'value': {'x': '1'}}",
        "{'key': 'st:1', 'id': '2-1', 'value': {'y': ''}}",
    ]


def test_only_matching_streams(r):
    rid = register_one(r, RECS.format(extra=""))
    r.xadd("other", {"f": "v"}, id="1-0")
    r.xadd("st", {"f": "v"}, id="1-0")
    r.xadd("st:x", {"f": "v"}, id="5-0")
    wait_stats(r, rid, numSuccess=1)
    assert lrange(r, "recs") == ["{'key': 'st:x', 'id': '5-0', 'value': {'f': 'v'}}"]
    assert r.xlen("other") == 1 and r.xlen("st") == 1


def test_exact_stream_name(r):
    rid = register_one(r, "GB('StreamReader').foreach(lambda e: execute('RPUSH', 'recs', e['key'])).register(prefix='events')")
    r.xadd("events2", {"f": "v"})
    r.xadd("events", {"f": "v"})
    wait_stats(r, rid, numSuccess=1)
    assert lrange(r, "recs") == ["events"]
    assert stats(r, rid)["args"]["stream"] == "events"


def test_batch_size(r):
    rid = register_one(r, BATCHES.format(extra=", batch=3"))
    r.xadd("st:1", {"f": "v"}, id="1-0")
    r.xadd("st:1", {"f": "v"}, id="2-0")
    r.xadd("st:1", {"f": "v"}, id="3-0")
    wait_until(lambda: lrange(r, "batches") == ["1-0,2-0,3-0"], what="the first batch")
    r.xadd("st:1", {"f": "v"}, id="4-0")
    r.xadd("st:1", {"f": "v"}, id="5-0")
    r.xadd("st:1", {"f": "v"}, id="6-0")
    wait_until(lambda: lrange(r, "batches") == ["1-0,2-0,3-0", "4-0,5-0,6-0"], what="the second batch")
    d = wait_stats(r, rid, numTriggered=2, numSuccess=2)
    assert d["args"]["batchSize"] == 3


def test_fewer_than_batch_entries_wait(r, raw):
    # the entries are written right after the registration's OK (they are not older than it)
    assert raw.call("RG.PYEXECUTE", BATCHES.format(extra=", batch=3")) == "OK"
    rid = raw.call("RG.DUMPREGISTRATIONS")[0][1].decode()
    assert raw.call("XADD", "st:1", "1-0", "f", "v") == b"1-0"
    assert raw.call("XADD", "st:1", "2-0", "f", "v") == b"2-0"
    time.sleep(1)  # nothing may start with only two of three entries (whatever the timing)
    assert stats(r, rid)["numTriggered"] == 0
    assert r.xlen("st:1") == 2
    assert lrange(r, "batches") == []


def test_duration_starts_a_short_batch(r):
    rid = register_one(r, BATCHES.format(extra=", batch=100, duration=100"))
    p = r.pipeline(transaction=True)
    p.xadd("st:1", {"f": "v"}, id="1-0")
    p.xadd("st:1", {"f": "v"}, id="2-0")
    p.execute()
    wait_until(lambda: lrange(r, "batches") == ["1-0,2-0"], what="the batch started by duration")
    r.xadd("st:1", {"f": "v"}, id="3-0")
    wait_until(lambda: lrange(r, "batches") == ["1-0,2-0", "3-0"], what="the second batch")
    assert stats(r, rid)["args"]["durationMS"] == 100


def test_trim_stream_default(r):
    rid = register_one(r, RECS.format(extra=""))
    for i in range(1, 4):
        r.xadd("st:1", {"f": "v"}, id=f"{i}-0")
    wait_until(lambda: len(lrange(r, "recs")) == 3, what="three records")
    wait_until(lambda: r.xlen("st:1") == 0, what="the stream to be trimmed")
    assert stats(r, rid)["args"]["trimStream"] == 1


def test_no_trim_acknowledges_through_the_consumer_group(r):
    rid = register_one(r, RECS.format(extra=", trimStream=False"))
    for i in range(1, 4):
        r.xadd("st:1", {"f": "v"}, id=f"{i}-0")
    wait_until(lambda: len(lrange(r, "recs")) == 3, what="three records")
    assert stats(r, rid)["args"]["trimStream"] == 0
    assert r.xlen("st:1") == 3
    groups = r.xinfo_groups("st:1")
    assert [g["name"] for g in groups] == [GROUP]
    wait_until(lambda: r.xinfo_groups("st:1")[0]["pending"] == 0, what="every entry acknowledged")
    assert CONSUMER in [c["name"] for c in r.xinfo_consumers("st:1", GROUP)]


def test_entries_written_before_registering_are_processed(r):
    for i in range(1, 4):
        r.xadd("st:1", {"n": str(i)}, id=f"{i}-0")
    r.xadd("st:2", {"n": "9"}, id="9-0")
    rid = register_one(r, "GB('StreamReader').foreach(lambda e: execute('RPUSH', 'seen:' + e['key'], e['id'])).register(prefix='st:*')")
    wait_until(lambda: lrange(r, "seen:st:1") == ["1-0", "2-0", "3-0"] and lrange(r, "seen:st:2") == ["9-0"],
               what="the old entries")
    d = stats(r, rid)
    assert d["numFailures"] == 0 and d["numTriggered"] == d["numSuccess"]


def test_sync_stream_registration_runs_inside_xadd(r):
    rid = register_one(r, RECS.format(extra=", mode='sync'"))
    for i in range(1, 4):
        r.xadd("st:1", {"f": "v"}, id=f"{i}-0")
        assert len(lrange(r, "recs")) == i
    assert stats(r, rid)["mode"] == "sync"


def test_dump_layout_of_a_stream_registration(r):
    rid = register_one(r, "GB('StreamReader', desc='streams').register(prefix='st:*', batch=5, duration=200, "
                          "onFailedPolicy='Retry', onFailedRetryInterval=3, trimStream=False)")
    entry = r.execute_command("RG.DUMPREGISTRATIONS")[0]
    assert entry[:6] == ["id", rid, "reader", "StreamReader", "desc", "streams"]
    data = entry[7]
    assert data[0::2] == ["mode", "numTriggered", "numSuccess", "numFailures", "numAborted", "lastRunDurationMS",
                          "totalRunDurationMS", "avgRunDurationMS", "lastEstimatedLagMS", "avgEstimatedLagMS",
                          "lastError", "args", "status"]
    assert data[1::2] == ["async", 0, 0, 0, 0, 0, 0, "0", 0, "0", None,
                          ["batchSize", 5, "durationMS", 200, "stream", "st:*", "trimStream", 0,
                           "onFailedPolicy", "retry", "retryInterval", 3],
                          "OK"]


def test_default_stream_args(r):
    rid = register_one(r, "GB('StreamReader').register()")
    assert r.execute_command("RG.DUMPREGISTRATIONS")[0][7][23] == [
        "batchSize", 1, "durationMS", 0, "stream", "*", "trimStream", 1,
        "onFailedPolicy", "continue", "retryInterval", 1]
    assert status(r, rid) == "OK"


def test_lag_statistics(r):
    rid = register_one(r, RECS.format(extra=""))
    r.xadd("st:1", {"f": "v"})
    d = wait_stats(r, rid, numSuccess=1)
    assert isinstance(d["lastEstimatedLagMS"], int) and d["lastEstimatedLagMS"] >= 0
    assert float(d["avgEstimatedLagMS"]) >= 0
    assert isinstance(d["lastRunDurationMS"], int) and isinstance(d["totalRunDurationMS"], int)


# --------------------------------------------------------------------------------------------
# onFailedPolicy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [None, "continue", "CONTINUE"])
def test_on_failed_continue(r, policy):
    extra = "" if policy is None else f", onFailedPolicy={policy!r}"
    rid = register_one(r, FAILING.format(extra=extra))
    assert stats(r, rid)["args"]["onFailedPolicy"] == "continue"
    r.xadd("st:1", {"bad": "1"}, id="1-0")
    d = wait_stats(r, rid, numTriggered=1, numFailures=1)
    assert d["lastError"].endswith("Exception: bad entry\\n']"), d["lastError"]
    assert d["status"] == "OK"
    r.xadd("st:1", {"good": "1"}, id="2-0")
    d = wait_stats(r, rid, numTriggered=2, numSuccess=1)
    assert d["lastError"] is None  # cleared by the success
    assert lrange(r, "ok") == ["2-0"]
    wait_until(lambda: r.xlen("st:1") == 0, what="the failed batch to be trimmed too")


def test_on_failed_abort(r):
    rid = register_one(r, FAILING.format(extra=", onFailedPolicy='Abort'"))
    assert stats(r, rid)["args"]["onFailedPolicy"] == "abort"
    r.xadd("st:1", {"bad": "1"}, id="1-0")
    wait_status(r, rid, "ABORTED")
    d = stats(r, rid)
    assert d["numFailures"] == 1 and d["lastError"].endswith("Exception: bad entry\\n']"), d
    r.xadd("st:1", {"good": "1"}, id="2-0")
    time.sleep(1)  # nothing more is processed, whatever the timing
    assert stats(r, rid)["numTriggered"] == 1
    assert status(r, rid) == "ABORTED"
    assert lrange(r, "ok") == []
    assert r.xlen("st:1") == 2
    # The entries were not acknowledged: a new registration of the stream gets both.
    r.set("fixed", "1")
    assert r.execute_command("RG.UNREGISTER", rid) == "OK"
    rid2 = register_one(r, FAILING.format(extra=""))
    wait_until(lambda: lrange(r, "ok") == ["1-0", "2-0"], what="the unacknowledged entries")
    assert stats(r, rid2)["numFailures"] == 0


def test_on_failed_retry(r):
    rid = register_one(r, FAILING.format(extra=", onFailedPolicy='retry', onFailedRetryInterval=1"))
    d = stats(r, rid)
    assert d["args"]["onFailedPolicy"] == "retry" and d["args"]["retryInterval"] == 1
    r.xadd("st:1", {"bad": "1"}, id="1-0")
    wait_status(r, rid, "WAITING_FOR_RETRY_ON_FAILURE")
    assert lrange(r, "ok") == []
    assert r.xlen("st:1") == 1
    r.set("fixed", "1")
    wait_until(lambda: lrange(r, "ok") == ["1-0"], what="the retry to succeed")
    wait_status(r, rid, "OK")
    d = stats(r, rid)
    assert d["numFailures"] >= 1 and d["numSuccess"] >= 1
    r.xadd("st:1", {"good": "1"}, id="2-0")
    wait_until(lambda: lrange(r, "ok") == ["1-0", "2-0"], what="processing to go on")


def test_pause_error_pauses_the_registration(r):
    rid = register_one(r, (
        "def f(e):\n"
        "    if 'p' in e['value'] and execute('SETNX', 'paused_once', '1') == 1:\n"
        "        flat_error('PAUSE asked by the entry')\n"
        "    execute('RPUSH', 'ok', e['id'])\n"
        "GB('StreamReader').foreach(f).register(prefix='st:*')\n"
    ))
    r.xadd("st:1", {"f": "v"}, id="1-0")
    wait_until(lambda: lrange(r, "ok") == ["1-0"])
    r.xadd("st:1", {"p": "1"}, id="2-0")
    wait_status(r, rid, "PAUSED")
    r.xadd("st:1", {"f": "v"}, id="3-0")
    time.sleep(1)  # paused: nothing more is processed, whatever the timing
    assert lrange(r, "ok") == ["1-0"]
    assert status(r, rid) == "PAUSED"
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", rid) == "OK"
    wait_until(lambda: lrange(r, "ok") == ["1-0", "2-0", "3-0"], what="the entries left while paused")
    assert status(r, rid) == "OK"


def test_pause_and_unpause_commands(r):
    rid = register_one(r, RECS.format(extra=""))
    r.xadd("st:1", {"f": "v"}, id="1-0")
    wait_stats(r, rid, numSuccess=1)
    assert r.execute_command("RG.PAUSEREGISTRATIONS", rid) == "OK"
    assert status(r, rid) == "PAUSED"
    assert r.execute_command("RG.PAUSEREGISTRATIONS", rid) == "OK"  # no-op
    r.xadd("st:1", {"f": "v"}, id="2-0")
    r.xadd("st:2", {"f": "v"}, id="3-0")
    time.sleep(1)  # paused: nothing more is processed, whatever the timing
    assert stats(r, rid)["numTriggered"] == 1
    assert r.xlen("st:1") == 1 and r.xlen("st:2") == 1
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", rid) == "OK"
    wait_until(lambda: len(lrange(r, "recs")) == 3, what="the entries added while paused")
    assert sorted(lrange(r, "recs")[1:]) == [
        "{'key': 'st:1', 'id': '2-0', 'value': {'f': 'v'}}",
        "{'key': 'st:2', 'id': '3-0', 'value': {'f': 'v'}}",
    ]
    assert status(r, rid) == "OK"


# --------------------------------------------------------------------------------------------
# Pending-events bound
# --------------------------------------------------------------------------------------------


@pytest.mark.module_args("MaxPendingEventsPerRegistration", "2")
def test_stream_events_beyond_the_pending_bound_are_processed_once(server, r):
    rid = register_one(r, (
        "import time\n"
        "def f(e):\n"
        "    time.sleep(0.05)\n"
        "    execute('HINCRBY', 'processed', e['id'], 1)\n"
        "GB('StreamReader').foreach(f).register(prefix='st:*')\n"
    ))
    for i in range(1, 31):
        r.xadd("st:1", {"n": str(i)}, id=f"{i}-0")
    wait_until(lambda: r.hlen("processed") == 30, what="every entry processed")
    wait_until(lambda: r.xlen("st:1") == 0, what="the stream to be trimmed")
    d = stats(r, rid)
    assert d["numFailures"] == 0 and d["numTriggered"] == d["numSuccess"]
    assert r.hgetall("processed") == {f"{i}-0": "1" for i in range(1, 31)}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, msg", [
    ("batch=0", "batch argument must be a number"),
    ("batch=-1", "batch argument must be a number"),
    ("batch='1'", "batch argument must be a number"),
    ("batch=None", "batch argument must be a number"),
    ("duration='x'", "duration argument must be a number"),
    ("duration=None", "duration argument must be a number"),
    ("onFailedPolicy='skip'", "onFailedPolicy must be Continue/Abort/Retry"),
    ("onFailedPolicy=1", "onFailedPolicy must be a string (Continue/Abort/Retry)"),
    ("mode='sync', onFailedPolicy='abort'", "ExecutionMode sync can only be combined with OnFailedPolicy Continue"),
    ("mode='sync', onFailedPolicy='Retry'", "ExecutionMode sync can only be combined with OnFailedPolicy Continue"),
    ("onFailedRetryInterval='x'", "retryInterval argument must be a number"),
    ("trimStream=1", "pyTrimmStream argument must be a boolean"),
    ("trimStream='yes'", "pyTrimmStream argument must be a boolean"),
    ("prefix=1", "regex argument must be a string"),
    ("mode='x', batch=0", "unknown execution mode"),
])
def test_stream_kwarg_errors(raw, kwargs, msg):
    assert_gears_error(raw, f"GB('StreamReader').register({kwargs})", msg)
    assert raw.call("RG.DUMPREGISTRATIONS") == []


def test_sync_with_continue_is_accepted(r):
    rid = register_one(r, "GB('StreamReader').register(prefix='st:*', mode='sync', onFailedPolicy='continue')")
    assert [reg["id"] for reg in dump_registrations(r)] == [rid]
