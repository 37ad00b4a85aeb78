"""Distributed batch executions (issue 19, RedisGears 1.2 semantics): on a Redis Cluster, a script's
`GB(...).run()` runs the same plan on every master over that master's keys, and its answer is the
one a single server holding all the keys gives.

One 3-master cluster (no replicas) and one stand-alone server, both module-scoped, hold the SAME
seeded random data set: strings holding ints (`num:*`), strings holding words (`word:*`) and
hashes (`user:*`). Each test runs one script on both and compares the answers; records may come
in any order, so they are compared as multisets (each record parsed when it is a Python literal,
so that a dict's field order does not count), except where the order is the answer (`sort`).
Different tests start their execution on different masters, so that every master is an initiator.

What is per shard by nature (`accumulate`, `localgroupby`, `limit`, `async_local`) is checked
for its shape or against the keys each master owns, never against the single server.

No speed is asserted anywhere; the replies come with generous socket timeouts.
"""

import ast
import random
import re
import string
import tempfile

import pytest
from redis.crc import key_slot

from cluster import cluster_fixture
from conftest import Server, pyexecute, stop_servers

MODULE_ARGS = ["ExecutionThreads", 2]

cluster = cluster_fixture(masters=3, replicas=0, module_args=MODULE_ARGS)

SEED = 1919
N_NUMBERS = 1500
N_WORDS = 1500
N_USERS = 400
VOCABULARY_SIZE = 60
CITIES = ["paris", "lima", "oslo", "kyiv", "quito", "accra", "hanoi", "bern"]
WRITE_CHUNK = 500
# Records per `num:*` key in the large repartition: 1500 x 34 = 51,000 records.
FANOUT = 34
PAYLOAD = "x" * 120


# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------


def data_set(seed=SEED):
    """{key: value}, the same every run (seeded): a str value for strings, a dict for hashes.
    Values repeat (a small vocabulary, ints mod anything) so that groups have many members. The
    ints are not negative: a reply string that starts with '-' is sent as an error reply."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))
                    for _ in range(VOCABULARY_SIZE)})
    data = {}
    for i in range(N_NUMBERS):
        data[f"num:{i}"] = str(rng.randint(0, 100_000))
    for i in range(N_WORDS):
        data[f"word:{i}"] = rng.choice(words)
    for i in range(N_USERS):
        data[f"user:{i}"] = {"name": rng.choice(words), "city": rng.choice(CITIES), "age": str(rng.randint(18, 90))}
    return data


DATA = data_set()


def keys_of(prefix):
    return [k for k in DATA if k.startswith(prefix)]


def write(client, items):
    """Writes (key, value) pairs through one client, pipelined in chunks."""
    items = list(items)
    for start in range(0, len(items), WRITE_CHUNK):
        pipe = client.pipeline(transaction=False)
        for key, value in items[start:start + WRITE_CHUNK]:
            if isinstance(value, dict):
                pipe.hset(key, mapping=value)
            else:
                pipe.set(key, value)
        pipe.execute()


def slot_owner(masters, key):
    """The master whose slot ranges hold `key`'s hash slot (computed here, not asked)."""
    slot = key_slot(key.encode())
    for m in masters:
        if any(a <= slot <= b for a, b in m.slots):
            return m
    raise AssertionError(f"no master serves slot {slot} of {key!r}: {masters}")


@pytest.fixture(scope="module")
def alone(so_path):
    """A stand-alone server with the module and the data set."""
    d = tempfile.mkdtemp(prefix="rustgears-test-")
    srv = Server(so_path, MODULE_ARGS, d).start()
    write(srv.client(), DATA.items())
    assert srv.client().dbsize() == len(DATA)
    yield srv
    stop_servers([srv], [d])


@pytest.fixture(scope="module")
def owners(cluster):
    """The data set written to the cluster, each key straight to its owner over a pipeline:
    {key: port of the master that owns it}."""
    masters = cluster.refresh().masters
    for m in masters:  # the module reads the topology again (it may not have seen the cluster yet)
        assert m.call("RG.REFRESHCLUSTER") == "OK", m
    for key in random.Random(SEED).sample(sorted(DATA), 20):  # our slot computation is the cluster's
        assert slot_owner(masters, key).port == cluster.owner(key).port, key
    placed = {key: slot_owner(masters, key) for key in DATA}
    for m in masters:
        write(m.client(), ((k, DATA[k]) for k, owner in placed.items() if owner is m))
    for m in masters:
        own = sum(1 for owner in placed.values() if owner is m)
        assert own > 0 and m.client().dbsize() == own, m
    return {k: m.port for k, m in placed.items()}


def initiator(cluster, n):
    """The master that starts a test's execution: tests pass different `n`, so each master is an
    initiator of several of them."""
    return cluster.masters[n % len(cluster.masters)]


# --------------------------------------------------------------------------------------------
# Comparing answers
# --------------------------------------------------------------------------------------------


def parsed(text):
    """A reply element as the Python value it prints, else the string itself (a word)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def canonical(value):
    """A form of `value` whose repr does not depend on dict or set order (list order counts)."""
    if isinstance(value, dict):
        return ("dict", sorted((repr(canonical(k)), canonical(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(repr(canonical(v)) for v in value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [canonical(v) for v in value])
    return value


def multiset(records):
    """The records as a sorted list of canonical reprs: equal for the same records in any order."""
    return sorted(repr(canonical(parsed(r))) for r in records)


def run_on(server, script, *args):
    """[results, errors] of a blocking RG.PYEXECUTE of `script` on `server` (a Server or a Node)."""
    reply = pyexecute(server.client(), script, *args)
    assert isinstance(reply, list) and len(reply) == 2, reply
    return reply


def describe_difference(want, got):
    missing = [x for x in want if x not in set(got)][:5]
    extra = [x for x in got if x not in set(want)][:5]
    return (f"{len(want)} records on one server, {len(got)} on the cluster; "
            f"missing on the cluster (first 5): {missing}; only on the cluster (first 5): {extra}")


def assert_same_answer(alone, master, script, ordered=False):
    """`script` gives the same records and no errors on the single server and started on `master`."""
    want_results, want_errors = run_on(alone, script)
    assert want_errors == [], want_errors  # the scripts are meant to succeed
    results, errors = run_on(master, script)
    assert errors == [], f"errors on the cluster (initiator {master.addr}): {errors[:5]}"
    if ordered:
        assert results == want_results, describe_difference(want_results, results)
    else:
        want, got = multiset(want_results), multiset(results)
        assert got == want, describe_difference(want, got)
    return results


# --------------------------------------------------------------------------------------------
# Every batch operation: the same answer on one server and on the cluster
# --------------------------------------------------------------------------------------------

# (id, script, whether the order of the records is part of the answer)
SAME_ANSWER = [
    ("count-all-keys", "GB().count().run()", False),
    ("count-pattern", "GB().count().run('num:*')", False),
    ("countby", "GB().countby(lambda r: r['value']).run('word:*')", False),
    ("groupby", "GB().groupby(lambda r: r['value'], "
                "lambda k, a, r: (a or 0) + int(r['key'].split(':')[1])).run('word:*')", False),
    ("batchgroupby", "GB().map(lambda r: int(r['value'])).batchgroupby(lambda x: x % 10, "
                     "lambda k, xs: [len(xs), sum(xs), min(xs), max(xs)]).run('num:*')", False),
    ("aggregateby", "GB().aggregateby(lambda r: r['value']['city'], 0, lambda k, a, r: a + int(r['value']['age']), "
                    "lambda k, a, p: a + p).run('user:*')", False),
    ("aggregate-sum", "GB().map(lambda r: int(r['value'])).aggregate(0, lambda a, x: a + x, "
                      "lambda a, p: a + p).run('num:*')", False),
    ("aggregate-list", "GB().map(lambda r: r['value']).aggregate([], lambda a, x: a + [x], "
                       "lambda a, p: a + p).map(lambda a: sorted(a)).run('word:*')", False),
    ("avg", "GB().map(lambda r: int(r['value'])).avg().run('num:*')", False),
    ("distinct", "GB().map(lambda r: r['value']).distinct().run('word:*')", False),
    ("sort-ascending", "GB().map(lambda r: int(r['value'])).sort().run('num:*')", True),
    ("sort-descending", "GB().map(lambda r: r['value']).sort(reverse=False).run('word:*')", True),
    ("repartition-collect", "GB().repartition(lambda r: r['value']).map(lambda r: r['key'])"
                            ".collect().run('word:*')", False),
    ("repartition-countby", "GB().map(lambda r: r['value']['name']).repartition(lambda x: x)"
                            ".countby().run('user:*')", False),
    ("map-filter-flatmap", "GB().filter(lambda r: int(r['value']) % 3 == 0)"
                           ".flatmap(lambda r: [r['key'], int(r['value']) * 2]).collect().run('num:*')", False),
    ("hashes", "GB().run('user:*')", False),
    ("hashes-keys-only", "GB().run('user:*', readValue=False)", False),
    ("keysonlyreader", "GB('KeysOnlyReader').run('num:*')", False),
]


@pytest.mark.parametrize("n, script, ordered", [pytest.param(i, s, o, id=name)
                                                for i, (name, s, o) in enumerate(SAME_ANSWER)])
def test_a_batch_operation_gives_the_single_servers_answer(cluster, alone, owners, n, script, ordered):
    assert_same_answer(alone, initiator(cluster, n), script, ordered)


@pytest.mark.parametrize("script", ["GB().count().run()", "GB().countby(lambda r: r['value']).run('word:*')"],
                         ids=["count", "countby"])
def test_every_master_as_initiator_gives_the_same_answer(cluster, alone, owners, script):
    for m in cluster.masters:
        assert_same_answer(alone, m, script)


def test_a_large_repartition_moves_every_record_once(cluster, alone, owners):
    """51,000 records cross shards twice (small tuples at the repartition, ~150-byte strings at the
    collect): many frames per peer, so the credit window has to refill. Every record arrives
    exactly once."""
    script = (f"GB().flatmap(lambda r: [(r['key'], j) for j in range({FANOUT})])"
              f".repartition(lambda x: '%s-%d' % x)"
              f".map(lambda x: '%s-%d-{PAYLOAD}' % x).run('num:*')")
    results = assert_same_answer(alone, initiator(cluster, 1), script)
    assert len(results) == N_NUMBERS * FANOUT


def test_records_of_every_crossable_type_arrive_unchanged(cluster, alone, owners):
    """None, bool, int (big ones too), float, str, bytes, list, tuple, dict and set keep their
    type and value when a record crosses shards (each record's repr parsed back: types and values
    count, the order of a dict's fields does not)."""
    script = ("def rec(r):\n"
              "    return {'k': r['key'], 'none': None, 'yes': True, 'big': 2 ** 70, 'neg': -7, 'f': 0.1,\n"
              "            'u': 'h\\u00e9llo \\u2603', 'b': b'\\x00\\xffraw', 't': (1, ('a', [2.5])), 'e': [],\n"
              "            'd': {'x': {1: 'one'}, (2, 3): None}, 's': {1, 2, 3}, 'fs': set()}\n"
              "GB().map(rec).repartition(lambda d: d['k'] + '#').map(lambda d: repr(d)).run('user:*')\n")
    assert_same_answer(alone, initiator(cluster, 2), script)


# --------------------------------------------------------------------------------------------
# The shards themselves
# --------------------------------------------------------------------------------------------


def test_the_shards_id_reader_yields_one_id_per_master(cluster, alone):
    assert run_on(alone, "GB('ShardsIDReader').run()") == [["1"], []]
    ids = sorted(m.node_id for m in cluster.masters)
    for m in cluster.masters:
        results, errors = run_on(m, "GB('ShardsIDReader').run()")
        assert errors == [] and sorted(results) == ids, (m, results, errors)


def test_async_local_reads_only_the_initiators_keys(cluster, owners):
    numbers = keys_of("num:")
    for m in cluster.masters:
        own = sorted(k for k in numbers if owners[k] == m.port)
        assert run_on(m, "GB().count().run('num:*', mode='async_local')") == [[str(len(own))], []], m
        results, errors = run_on(m, "GB().map(lambda r: r['key']).run('num:*', mode='async_local')")
        assert errors == [] and sorted(results) == own, m


# --------------------------------------------------------------------------------------------
# Per shard by nature: shapes only
# --------------------------------------------------------------------------------------------


def test_localgroupby_then_collect_gathers_each_shards_groups(cluster, alone, owners):
    """Each master groups its own keys; the groups of a word, summed over the shards, are the
    single server's count of it, and no shard gives a word twice."""
    script = "GB().localgroupby(lambda r: r['value'], lambda k, a, r: (a or 0) + 1).collect().run('word:*')"
    results, errors = run_on(initiator(cluster, 0), script)
    assert errors == [], errors
    groups = [parsed(r) for r in results]
    per_word = {}
    for g in groups:
        per_word[g["key"]] = per_word.get(g["key"], 0) + g["value"]
    want = {parsed(r)["key"]: parsed(r)["value"]
            for r in run_on(alone, "GB().countby(lambda r: r['value']).run('word:*')")[0]}
    assert per_word == want
    assert len(groups) <= 3 * len(want)
    assert len(groups) > len(want), "no word was found on more than one shard: was only one shard read?"


def test_accumulate_gives_one_record_per_shard(cluster, owners):
    script = "GB().map(lambda r: 1).accumulate(lambda a, x: (a or 0) + x).run('num:*')"
    results, errors = run_on(initiator(cluster, 1), script)
    assert errors == [], errors
    want = sorted(sum(1 for k in keys_of("num:") if owners[k] == m.port) for m in cluster.masters)
    assert sorted(int(r) for r in results) == want


def test_limit_applies_on_each_shard(cluster, owners):
    results, errors = run_on(initiator(cluster, 2), "GB().map(lambda r: r['key']).limit(10).run('num:*')")
    assert errors == [], errors
    per_master = {}
    for key in results:
        per_master[owners[key]] = per_master.get(owners[key], 0) + 1
    assert sorted(per_master) == sorted(m.port for m in cluster.masters), per_master
    assert all(n == 10 for n in per_master.values()), per_master


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

FAILING = re.compile(r"bad<(num:\d+)>")


def failing_numbers():
    """The num:* keys the error script fails on: a fifth of them, on every master."""
    return {k for k in keys_of("num:") if int(DATA[k]) % 5 == 0}


def test_the_initiators_errors_hold_every_shards_errors(cluster, alone, owners):
    """A step that fails on some keys of every shard: each shard's first error ends that shard's
    reader (as the first error ends a single server's), and the initiator's errors list holds
    errors from all three shards."""
    script = ("def check(r):\n"
              "    if int(r['value']) % 5 == 0:\n"
              "        raise ValueError('bad<%s>' % r['key'])\n"
              "    return r['key']\n"
              "GB().map(check).run('num:*')\n")
    _results, want_errors = run_on(alone, script)
    assert want_errors and {k for e in want_errors for k in FAILING.findall(e)} <= failing_numbers(), want_errors
    results, errors = run_on(initiator(cluster, 0), script)
    failed = [k for e in errors for k in FAILING.findall(e)]
    assert errors and all("ValueError" in e for e in errors), errors[:3]
    assert set(failed) <= failing_numbers() and len(failed) == len(errors), errors[:3]
    assert {owners[k] for k in failed} == {m.port for m in cluster.masters}, f"errors from one shard only: {errors}"
    assert not set(results) & failing_numbers(), sorted(set(results) & failing_numbers())[:5]


BOX = ("class Box:\n"
       "    def __init__(self, k):\n"
       "        self.k = k\n")


def assert_serialization_errors(errors):
    assert errors, "records that cannot cross shards crossed without an error"
    assert all("serializ" in e for e in errors), errors[:5]


def test_a_record_that_cannot_cross_shards_fails_on_the_sending_shard(cluster, alone, owners):
    """A class instance repartitioned to another shard: an error naming serialization, and only
    the records that stayed on their shard arrive."""
    script = BOX + "GB().map(lambda r: Box(r['key'])).repartition(lambda b: b.k + '#').map(lambda b: b.k).run('num:*')"
    numbers = keys_of("num:")
    assert multiset(run_on(alone, script)[0]) == multiset(numbers)
    results, errors = run_on(initiator(cluster, 1), script)
    assert_serialization_errors(errors)
    stayed = {k for k in numbers if owners[k] == slot_owner(cluster.masters, k + "#").port}
    assert set(results) <= stayed, sorted(set(results) - stayed)[:5]


def test_a_record_that_cannot_be_collected_fails_on_the_sending_shard(cluster, owners):
    """The same at collect(): only the initiator's own records arrive."""
    script = BOX + "GB().map(lambda r: Box(r['key'])).collect().map(lambda b: b.k).run('num:*')"
    m = initiator(cluster, 2)
    results, errors = run_on(m, script)
    assert_serialization_errors(errors)
    assert {owners[k] for k in results} <= {m.port}, results[:5]
