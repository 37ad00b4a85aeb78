"""rustgears on a Redis Cluster (tests/cluster.py): 3 masters with a replica each, one cluster for
the whole file.

The module reads the cluster's topology from Redis (RG.INFOCLUSTER, execution ids, `hashtag()`);
a script's run() runs on every master, `async_local` on the master it starts on. What distributed
executions answer, operation by operation, is compared with one server in test_cluster_batch.py;
failures (a master killed mid-execution) are in test_cluster_failure.py.

The failover test kills a master, so it comes last."""

import pytest

from cluster import HASH_SLOTS, cluster_fixture
from conftest import Error, Status, pyexecute, wait_until

cluster = cluster_fixture(masters=3, replicas=1)

N_KEYS = 60
INFO_NODE_KEYS = ["id", "ip", "port", "unixSocket", "runid", "minHslot", "maxHslot", "pendingMessages"]


@pytest.fixture(scope="module")
def keys(cluster):
    """N_KEYS keys written through a cluster-aware client: {key: port of the master that owns it}."""
    c = cluster.client()
    written = {}
    for i in range(N_KEYS):
        key = f"key:{i}"
        c.set(key, f"value {i}")
        written[key] = cluster.owner(key).port
    assert len(set(written.values())) == 3, written  # every master got some
    for m in cluster.masters:  # on the replicas too (the failover test relies on it)
        assert m.call("WAIT", 1, 120000) == 1, m
    return written


def value(key):
    return f"value {key.split(':')[1]}"


def local_keys(node):
    return set(node.client().scan_iter(count=1000))


def test_the_cluster_has_three_masters_with_a_replica_each(cluster):
    assert len(cluster.masters) == 3 and len(cluster.replicas) == 3
    assert sorted(s for m in cluster.masters for s in m.slots) == [
        (0, 5460), (5461, 10922), (10923, HASH_SLOTS - 1)]
    for m in cluster.masters:
        assert len(cluster.replicas_of(m)) == 1
    for n in cluster.nodes:
        assert n.info("CLUSTER", "INFO")["cluster_state"] == "ok"


def test_the_module_loads_on_every_node(cluster):
    for n in cluster.nodes:
        mods = {m["name"]: m["ver"] for m in n.client().module_list()}
        assert mods.get("rg") == 10213, (n, mods)
        assert n.client().execute_command("RG.DUMPPLUGINS") == [["GearsPythonPlugin", 10000]], n


def test_an_async_local_execution_sees_its_masters_keys_only(cluster, keys):
    seen = set()
    for m in cluster.masters:
        own = {k for k, port in keys.items() if port == m.port}
        assert own and local_keys(m) == own, m
        res = pyexecute(m.client(), "GB().map(lambda r: r['key']).run(mode='async_local')")
        assert len(res) == 2 and res[1] == [], res
        assert sorted(res[0]) == sorted(own), m
        seen |= own
    assert seen == set(keys)


def test_an_execution_reads_and_writes_a_key_of_its_master(cluster, keys):
    m = cluster.masters[0]
    key = next(k for k, port in keys.items() if port == m.port)
    c = m.client()
    assert pyexecute(c, "GB().map(lambda r: r['value']).run(%r)" % key) == [[value(key)], []]
    script = "GB().foreach(lambda r: execute('SET', r['key'], 'rewritten')).map(lambda r: r['key']).run(%r)" % key
    assert pyexecute(c, script) == [[key], []]
    # the write lands on the owner and reaches its replica
    assert cluster.client().get(key) == "rewritten"
    replica = cluster.replicas_of(m)[0]
    rc = replica.client()
    rc.execute_command("READONLY")
    wait_until(lambda: rc.get(key) == "rewritten", what=f"{key} on the replica {replica.addr}")
    c.set(key, value(key))
    assert m.call("WAIT", 1, 120000) == 1


def test_refreshcluster_replies_ok_on_every_master(cluster):
    for m in cluster.masters:
        assert m.call("RG.REFRESHCLUSTER") == Status("OK"), m


# --------------------------------------------------------------------------------------------
# The topology, as RedisGears 1.2 shows it
# --------------------------------------------------------------------------------------------


def test_infocluster_lists_the_three_masters(cluster):
    masters = {m.node_id: m for m in cluster.masters}
    run_ids = {m.node_id: m.client().info("server")["run_id"] for m in cluster.masters}
    for m in cluster.masters:
        # Peers' run ids are known once they have spoken (each tells the ones it does not know).
        def info():
            reply = m.client().execute_command("RG.INFOCLUSTER")
            runids = [dict(zip(i[0::2], i[1::2]))["runid"] for i in reply[4]]
            return reply if None not in runids else None

        reply = wait_until(info, what=f"every run id known to {m.addr}")
        assert isinstance(reply, list) and len(reply) == 5, reply
        assert reply[0] == "MyId" and reply[2] == "MyRunId", reply
        assert reply[1] == m.node_id
        assert reply[3] == run_ids[m.node_id]
        infos = reply[4]
        assert len(infos) == 3, infos
        for info in infos:
            assert info[0::2] == INFO_NODE_KEYS, info
            fields = dict(zip(info[0::2], info[1::2]))
            node = masters[fields["id"]]
            assert fields["ip"] == node.host
            assert int(fields["port"]) == node.port
            assert fields["unixSocket"] == "None"
            assert [(int(fields["minHslot"]), int(fields["maxHslot"]))] == node.slots
            assert int(fields["pendingMessages"]) == 0
            assert fields["runid"] == run_ids[node.node_id]
        assert {dict(zip(i[0::2], i[1::2]))["id"] for i in infos} == set(masters)


def test_on_a_replica_and_stand_alone_there_is_no_cluster_mode(cluster, start_server):
    assert cluster.replicas[0].client().execute_command("RG.INFOCLUSTER") == "no cluster mode"
    alone = start_server().client()
    assert alone.execute_command("RG.INFOCLUSTER") == "no cluster mode"
    assert alone.execute_command("RG.REFRESHCLUSTER") == "OK"


def test_execution_ids_and_the_shards_id_reader_carry_the_node_id(cluster):
    for m in cluster.masters:
        c = m.client()
        eid = pyexecute(c, "GB('ShardsIDReader').run(mode='async_local')", "UNBLOCKING")
        assert eid.rpartition("-")[0] == m.node_id, eid
        assert c.execute_command("RG.GETRESULTSBLOCKING", eid) == [[m.node_id], []]
        c.execute_command("RG.DROPEXECUTION", eid)


def test_hashtag_keeps_keys_on_the_shard_that_made_them(cluster):
    for m in cluster.masters:
        tag = pyexecute(m.client(), "GB('ShardsIDReader').map(lambda x: hashtag()).run(mode='async_local')")[0][0]
        assert m.client().execute_command("CLUSTER", "KEYSLOT", "k{%s}" % tag) == m.slots[0][0], (m, tag)
        key = "cache:{%s}:1" % tag
        assert cluster.owner(key).port == m.port


def test_commands_for_a_key_of_another_shard_get_moved(cluster):
    m = cluster.masters[0]
    c = m.client()
    key = next(f"elsewhere:{i}" for i in range(1000) if cluster.owner(f"elsewhere:{i}").port != m.port)
    slot = c.execute_command("CLUSTER", "KEYSLOT", key)
    c.execute_command("RG.PYEXECUTE", "GB('CommandReader').register(trigger='t', mode='sync')", "ID", "moved-t")
    hook = "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='hset', mode='sync')"
    c.execute_command("RG.PYEXECUTE", hook, "ID", "moved-h")
    try:
        for command in (("RG.TRIGGERONKEY", "t", key), ("HSET", key, "f", "v")):
            reply = m.call(*command)
            assert isinstance(reply, Error) and reply.startswith(f"MOVED {slot} "), (command, reply)
        assert cluster.client().exists(key) == 0  # the trigger and the hook ran nowhere
    finally:
        for reg in c.execute_command("RG.DUMPREGISTRATIONS"):
            c.execute_command("RG.UNREGISTER", reg[1])


def registration_ids(node):
    return sorted(r[1] for r in node.client().execute_command("RG.DUMPREGISTRATIONS"))


def registration_data(node, rid):
    """The RegistrationData fields of registration `rid` on `node`."""
    for r in node.client().execute_command("RG.DUMPREGISTRATIONS"):
        fields = dict(zip(r[0::2], r[1::2]))
        if fields["id"] == rid:
            data = fields["RegistrationData"]
            return dict(zip(data[0::2], data[1::2]))
    raise AssertionError(f"{rid} is not registered on {node.addr}")


def test_an_upgrade_on_one_master_replaces_the_session_on_every_master(cluster):
    a = cluster.masters[0]
    first = "GB('CommandReader').register(trigger='v1')"
    assert a.client().execute_command("RG.PYEXECUTE", first, "ID", "upgraded") == "OK"
    [old] = registration_ids(a)
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [old], what=f"{old} on {n.addr}")
    second = "GB('CommandReader').map(lambda x: 'v2').register(trigger='v2')"
    assert a.client().execute_command("RG.PYEXECUTE", second, "ID", "upgraded", "UPGRADE") == "OK"
    [new] = registration_ids(a)
    assert new != old
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [new], what=f"{new} in place of {old} on {n.addr}")
    # An async trigger runs on every master, each re-emitting its arguments.
    for m in cluster.masters:
        assert m.client().execute_command("RG.TRIGGER", "v2") == ["v2"] * len(cluster.masters), m
    assert a.client().execute_command("RG.UNREGISTER", new) == "OK"
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [], what=f"{new} gone from {n.addr}")


def test_a_stream_registration_is_paused_and_unpaused_on_every_master(cluster):
    a = cluster.masters[0]
    assert a.client().execute_command("RG.PYEXECUTE", "GB('StreamReader').register(prefix='st:*')", "ID", "streams") == "OK"
    [rid] = registration_ids(a)
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [rid], what=f"{rid} on {n.addr}")
    try:
        for pause, status in (("RG.PAUSEREGISTRATIONS", "PAUSED"), ("RG.UNPAUSEREGISTRATIONS", "OK")):
            assert a.client().execute_command(pause, rid) == "OK"
            for m in cluster.masters:
                wait_until(lambda: registration_data(m, rid)["status"] == status, what=f"{rid} {status} on {m.addr}")
    finally:
        assert a.client().execute_command("RG.UNREGISTER", rid) == "OK"
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [], what=f"{rid} gone from {n.addr}")


def test_a_registration_made_on_one_master_fires_on_every_master(cluster):
    a = cluster.masters[0]
    script = ("GB().foreach(lambda r: execute('SET', 'seen:{%s}' % hashtag(), r['key']))"
              ".register(prefix='fire:*', mode='sync')")
    assert a.client().execute_command("RG.PYEXECUTE", script, "ID", "everywhere") == "OK"
    [rid] = registration_ids(a)
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [rid], what=f"{rid} on {n.addr}")
    c = cluster.client()
    written = []
    try:
        for m in cluster.masters:
            key = next(f"fire:{i}" for i in range(1000) if cluster.owner(f"fire:{i}").port == m.port)
            c.set(key, "x")
            tag = pyexecute(m.client(), "GB('ShardsIDReader').map(lambda x: hashtag()).run(mode='async_local')")[0][0]
            written += [key, "seen:{%s}" % tag]
            assert m.client().get("seen:{%s}" % tag) == key, m
        for m in cluster.masters:
            assert registration_data(m, rid)["numSuccess"] == 1, m
        assert a.client().execute_command("RG.CLEARREGISTRATIONSSTATS") == "OK"
        for m in cluster.masters:
            wait_until(lambda: registration_data(m, rid)["numTriggered"] == 0, what=f"stats cleared on {m.addr}")
    finally:
        assert a.client().execute_command("RG.UNREGISTER", rid) == "OK"
        for key in written:
            c.delete(key)
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [], what=f"{rid} gone from {n.addr}")


def test_an_async_registrations_execution_spans_every_master_and_async_local_stays(cluster):
    a = cluster.masters[0]
    spread = "GB('CommandReader').map(lambda x: hashtag()).register(trigger='where')"
    local = "GB('CommandReader').map(lambda x: hashtag()).register(trigger='here', mode='async_local')"
    # A keyspace event on one master whose records are repartitioned to the master of slot
    # `{k}`: the write happens there (the other masters' parts read no key).
    moved = ("GB().map(lambda r: r['key']).repartition(lambda r: '{k}')"
             ".foreach(lambda r: execute('SET', '{k}:got', r)).register(prefix='span:*')")
    for script, session in ((spread, "where"), (local, "here"), (moved, "moved")):
        assert a.client().execute_command("RG.PYEXECUTE", script, "ID", session) == "OK"
    rids = registration_ids(a)
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == rids, what=f"{rids} on {n.addr}")
    tags = {pyexecute(m.client(), "GB('ShardsIDReader').map(lambda x: hashtag()).run(mode='async_local')")[0][0]: m
            for m in cluster.masters}
    c = cluster.client()
    try:
        for m in cluster.masters:
            assert sorted(m.client().execute_command("RG.TRIGGER", "where")) == sorted(tags), m
            [tag] = m.client().execute_command("RG.TRIGGER", "here")
            assert tags[tag] is m
        key = next(f"span:{i}" for i in range(1000) if cluster.owner(f"span:{i}") is not cluster.owner("{k}"))
        c.set(key, "x")
        wait_until(lambda: c.get("{k}:got") == key, what="the record written on the master of {k}")
    finally:
        for rid in rids:
            assert a.client().execute_command("RG.UNREGISTER", rid) == "OK"
        c.delete(key, "{k}:got")
    for n in cluster.nodes:
        wait_until(lambda: registration_ids(n) == [], what=f"{rids} gone from {n.addr}")


# --------------------------------------------------------------------------------------------
# Distributed executions
# --------------------------------------------------------------------------------------------


def test_shardsidreader_yields_one_id_per_shard(cluster):
    ids = {m.node_id for m in cluster.masters}
    for m in cluster.masters:
        res = pyexecute(m.client(), "GB('ShardsIDReader').run()")
        assert res[1] == [], res
        assert len(res[0]) == 3 and set(res[0]) == ids, res


def test_count_on_any_master_counts_every_key_of_the_cluster(cluster, keys):
    for m in cluster.masters:
        assert pyexecute(m.client(), "GB().count().run()") == [[str(N_KEYS)], []], m


def dumped(node, eid):
    return [e[3] for e in node.client().execute_command("RG.DUMPEXECUTIONS") if e[1] == eid]


def test_every_master_lists_its_copy_until_the_initiator_drops_it(cluster, keys):
    initiator = cluster.masters[1]
    eid = initiator.client().execute_command("RG.PYEXECUTE", "GB().count().run()", "UNBLOCKING")
    assert eid.startswith(initiator.node_id + "-"), eid
    wait_until(lambda: all(dumped(m, eid) == ["done"] for m in cluster.masters), what="every copy done")
    assert initiator.client().execute_command("RG.GETRESULTS", eid) == [[str(N_KEYS)], []]
    # Every master's entry; the initiator's counted everything.
    entries = cluster.masters[0].client().execute_command("RG.GETEXECUTION", eid, "CLUSTER")
    by_shard = {e[1]: dict(zip(e[3][0::2], e[3][1::2])) for e in entries}
    assert set(by_shard) == {m.node_id for m in cluster.masters}, entries
    assert all(plan["status"] == "done" and plan["errors"] == [] for plan in by_shard.values()), entries
    assert by_shard[initiator.node_id]["results"] == 1
    # SHARD (the default) is this master's entry only.
    assert [e[1] for e in cluster.masters[0].client().execute_command("RG.GETEXECUTION", eid)] == [
        cluster.masters[0].node_id]
    assert initiator.client().execute_command("RG.DROPEXECUTION", eid) == "OK"
    wait_until(lambda: all(dumped(m, eid) == [] for m in cluster.masters), what="every copy dropped")


def test_a_blocking_runs_copies_go_with_it(cluster, keys):
    before = [len(m.client().execute_command("RG.DUMPEXECUTIONS")) for m in cluster.masters]
    assert pyexecute(cluster.masters[2].client(), "GB().count().run()") == [[str(N_KEYS)], []]
    # Each copy is dropped as its part ends, before the initiator's reply.
    assert [len(m.client().execute_command("RG.DUMPEXECUTIONS")) for m in cluster.masters] == before


def test_an_abort_on_the_initiator_stops_every_master(cluster):
    initiator = cluster.masters[0]
    script = "GB('ShardsIDReader').map(lambda x: sum(i for i in range(10**10))).run()"
    eid = initiator.client().execute_command("RG.PYEXECUTE", script, "UNBLOCKING")
    wait_until(lambda: all(dumped(m, eid) == ["running"] for m in cluster.masters), what="running everywhere")
    assert initiator.client().execute_command("RG.ABORTEXECUTION", eid) == "OK"
    wait_until(lambda: all(dumped(m, eid) == ["done"] for m in cluster.masters), what="ended everywhere")
    for m in cluster.masters:
        results, errors = m.client().execute_command("RG.GETRESULTS", eid)
        assert results == [] and errors and errors[-1] == "Execution was aborted", (m, errors)


def test_a_record_that_cannot_cross_shards_is_an_error_of_the_shard_that_sends_it(cluster, keys):
    res = pyexecute(cluster.masters[0].client(), "GB().map(lambda r: object()).collect().count().run()")
    results, errors = res
    kept = len(local_keys(cluster.masters[0]))
    # The initiator's own records never cross; every other record fails to.
    assert results == [str(kept)], res
    assert len(errors) == N_KEYS - kept and all("serializ" in e and "'object'" in e for e in errors), errors[:3]


# --------------------------------------------------------------------------------------------
# Last: kills a master
# --------------------------------------------------------------------------------------------


def test_a_killed_masters_replica_takes_over_with_the_module(cluster, keys):
    killed = cluster.kill_master()
    own = {k for k, port in keys.items() if port == killed.port}
    new = cluster.wait_failover(killed)
    assert new.node_id != killed.node_id and new.slots == killed.slots
    assert len(cluster.masters) == 3
    res = pyexecute(new.client(), "GB().map(lambda r: r['key']).run(mode='async_local')")
    assert res[1] == [] and sorted(res[0]) == sorted(own)
    # The promoted replica takes part in distributed executions in its master's place.
    for m in cluster.masters:
        assert pyexecute(m.client(), "GB().count().run()") == [[str(N_KEYS)], []], m
    c = cluster.client()
    for k in own:
        assert c.get(k) == value(k)
