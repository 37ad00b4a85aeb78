"""A shard that dies mid-execution (issue 19, RedisGears 1.2 semantics): with `ExecutionMaxIdleTime`
3000 ms on every master, an execution started on master A whose step on master B is slow ends,
once B is killed with SIGKILL, with the error `Execution max idle reached` within the limit + 1 s,
and no master that is left holds an execution still running or waiting to run.

Each test has its own cluster (3 masters, no replicas, function-scoped): killing a master without
a replica leaves the cluster failed, which the execution must survive anyway.

The only timed assertion of the suite's cluster tests is here: the time from the kill to the end
of A's execution must stay under the limit + 1 s + SLACK (generous, for a loaded machine), and the
execution must not have ended before having been able to idle for the limit (it started at least
that long before it ended). Every wait is a polling loop with a deadline.
"""

import time

import pytest

from cluster import cluster_fixture
from conftest import Error

MAX_IDLE_MS = 3000
MAX_IDLE_S = MAX_IDLE_MS / 1000
# The contract's bound is the limit + 1 s; SLACK more for a loaded 2-core machine, yet less than
# the 2 s between the limit set here and the default (5000 ms), so that ignoring it fails.
SLACK = 0.9
# How much earlier than the limit (after its start) the execution may end: timer granularity.
EARLY = 0.25
POLL = 0.02
# B's slow step lasts at most this long, so that a kill that never came still ends it.
SLOW_S = 120
# Generous upper bounds for waiting, never speed assertions.
REACH_DEADLINE = 60.0
END_DEADLINE = 60.0
IDLE_TEXT = "Execution max idle reached"
LIVE_STATUSES = ("running", "created")

cluster = cluster_fixture(masters=3, replicas=0, module_args=["ExecutionThreads", 2], scope="function")

# Every master reads its shard id; on B the step writes a marker key on B (a key with B's hash
# tag) with the time it started, then sleeps in a loop.
SLOW_STEP = """
import time
def slow(shard):
    if shard == {b_id!r}:
        execute('SET', 'slow:{{%s}}' % hashtag(), repr(time.time()))
        end = time.time() + {seconds}
        while time.time() < end:
            time.sleep(0.01)
    return shard
GB('ShardsIDReader').map(slow){tail}.run()
"""

# What follows the slow step: A waits for B at the final collect, or every shard waits for B's
# part of a repartition before counting.
TAILS = {"collect": "", "repartition": ".repartition(lambda shard: shard).count()"}


def prepare(masters):
    """Every master reads the topology again (as RedisGears asks after a cluster is formed: the
    module may not have seen it yet) and gets the idle limit."""
    for m in masters:
        assert m.call("RG.REFRESHCLUSTER") == "OK", m
        assert m.call("RG.CONFIGSET", "ExecutionMaxIdleTime", MAX_IDLE_MS) == ["OK"], m
        assert m.call("RG.CONFIGGET", "ExecutionMaxIdleTime") == [MAX_IDLE_MS], m


def live_executions(node):
    """The executions `node` lists as running or waiting to run: [(id, status)]."""
    out = []
    for entry in node.call("RG.DUMPEXECUTIONS"):
        fields = dict(zip(entry[0::2], entry[1::2]))
        status = fields[b"status"].decode()
        if status in LIVE_STATUSES:
            out.append((fields[b"executionId"].decode(), status))
    return out


def results_of(node, eid):
    """RG.GETRESULTS of `eid` on `node`: None while it runs, else its reply (or error reply)."""
    reply = node.call("RG.GETRESULTS", eid)
    if isinstance(reply, Error) and "still running" in reply:
        return None
    return reply


def wait_for_slow_step(a, b, eid):
    """Waits until B runs its slow step (its marker key exists); fails at once, saying why, if
    A's execution ends first (e.g. it never reached B). Returns the time B's step started."""
    deadline = time.monotonic() + REACH_DEADLINE
    while True:
        markers = b.client().keys("slow:*")
        if markers:
            return float(b.client().get(markers[0]))
        ended = results_of(a, eid)
        if ended is not None:
            pytest.fail(f"{eid} ended on A before B ran its step (did it reach B?): {ended!r}")
        if time.monotonic() > deadline:
            pytest.fail(f"B never started its step of {eid} within {REACH_DEADLINE}s")
        time.sleep(POLL)


def wait_for_end(a, eid):
    """Polls A until `eid` ends; returns (its reply, the monotonic time it was seen ended)."""
    deadline = time.monotonic() + END_DEADLINE
    while True:
        reply = results_of(a, eid)
        if reply is not None:
            return reply, time.monotonic()
        if time.monotonic() > deadline:
            pytest.fail(f"{eid} still running on A {END_DEADLINE}s after B was killed")
        time.sleep(POLL)


def wait_nothing_live(node):
    """Waits until `node` lists no running or created execution (a copy of the execution included)."""
    deadline = time.monotonic() + END_DEADLINE
    while True:
        left = live_executions(node)
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{node.addr} still lists {left} {END_DEADLINE}s after the execution ended on A")
        time.sleep(POLL)


def error_texts(reply):
    """The error texts of an execution's reply: its errors list, or the error reply itself."""
    if isinstance(reply, Error):
        return [str(reply)]
    assert isinstance(reply, list) and len(reply) == 2, reply
    return [e.decode(errors="replace") if isinstance(e, bytes) else str(e) for e in reply[1]]


@pytest.mark.parametrize("tail", sorted(TAILS))
def test_killing_a_shard_mid_execution_ends_it_with_max_idle(cluster, tail):
    a, b, c = cluster.masters
    prepare(cluster.masters)
    script = SLOW_STEP.format(b_id=b.node_id, seconds=SLOW_S, tail=TAILS[tail])
    started = time.monotonic()
    eid = a.call("RG.PYEXECUTE", script, "UNBLOCKING")
    assert isinstance(eid, bytes), eid
    eid = eid.decode()
    b_started = wait_for_slow_step(a, b, eid)
    assert results_of(a, eid) is None, f"{eid} ended on A while B was still in its step"
    cluster.kill(b)
    killed = time.monotonic()
    reply, ended = wait_for_end(a, eid)
    timing = (f"ended {ended - killed:.2f}s after the kill, {ended - started:.2f}s after the start; B's step "
              f"started {time.time() - b_started - (time.monotonic() - killed):.2f}s before the kill; reply {reply!r}")
    errors = error_texts(reply)
    assert any(IDLE_TEXT in e for e in errors), f"no {IDLE_TEXT!r} among the errors: {timing}"
    assert ended - started >= MAX_IDLE_S - EARLY, f"ended before it could idle {MAX_IDLE_S}s: {timing}"
    assert ended - killed < MAX_IDLE_S + 1 + SLACK, timing
    for m in (a, c):
        wait_nothing_live(m)
