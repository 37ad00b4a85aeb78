"""Long executions are visible to Redis's own tools: a blocked RG command's blocked time counts in
SLOWLOG (with its arguments, as in RedisGears) and reaches the latency monitor as the
`rg-execution` event (docs/commands.md#slowlog-and-latency).

The durations asserted are lower bounds (a script that sleeps 1 s blocks its client at least that
long), never speed."""

import threading
import time

from conftest import WAIT_DEADLINE, blocked_clients, gate_script, pyexecute, wait_until

SLEEP_1S = "GB('ShardsIDReader').map(lambda x: __import__('time').sleep(1)).run()"
SLEEP_SHORT = "GB('ShardsIDReader').map(lambda x: __import__('time').sleep(0.2)).run()"
# Lower bounds with room for clock granularity.
AT_LEAST_1S_US = 900_000
AT_LEAST_1S_MS = 900


def slowlog(raw):
    """SLOWLOG GET as (duration in µs, [command and arguments as str]), newest first."""
    return [(entry[2], [a.decode() for a in entry[3]]) for entry in raw.call("SLOWLOG", "GET", "-1")]


def latest_rg_execution(r):
    """The `rg-execution` row of LATENCY LATEST: [name, time, latest ms, max ms], or None."""
    return next((row for row in r.execute_command("LATENCY", "LATEST") if row[0] == "rg-execution"), None)


def test_blocked_time_puts_a_long_pyexecute_in_the_slowlog_and_commandstats(r, raw):
    r.config_set("slowlog-log-slower-than", 500_000)
    r.execute_command("SLOWLOG", "RESET")
    assert pyexecute(r, SLEEP_1S) == [["None"], []]
    entries = slowlog(raw)
    assert [args for _, args in entries] == [["RG.PYEXECUTE", SLEEP_1S]]
    assert entries[0][0] >= AT_LEAST_1S_US
    assert r.info("commandstats")["cmdstat_rg.pyexecute"]["usec"] >= AT_LEAST_1S_US


def test_fast_commands_stay_out_of_the_slowlog(r, raw):
    r.config_set("slowlog-log-slower-than", 500_000)
    r.execute_command("SLOWLOG", "RESET")
    pyexecute(r, "GB().run()")
    assert raw.call("SLOWLOG", "GET") == []


def test_getresultsblocking_counts_its_own_wait(server, r, raw):
    eid = pyexecute(r, gate_script("gate"), "UNBLOCKING")
    r.config_set("slowlog-log-slower-than", 500_000)
    r.execute_command("SLOWLOG", "RESET")
    waiter = threading.Thread(target=lambda: server.client().execute_command("RG.GETRESULTSBLOCKING", eid))
    waiter.start()
    wait_until(lambda: blocked_clients(r) == 1, what="RG.GETRESULTSBLOCKING to block")
    time.sleep(1)  # keeps the waiter blocked at least this long
    r.set("gate", "1")
    waiter.join(WAIT_DEADLINE)
    entries = slowlog(raw)
    assert [args for _, args in entries] == [["RG.GETRESULTSBLOCKING", eid]]
    assert entries[0][0] >= AT_LEAST_1S_US


def test_latency_event_for_a_long_execution(r):
    r.config_set("latency-monitor-threshold", 100)
    pyexecute(r, SLEEP_1S)
    name, _when, latest, worst = latest_rg_execution(r)
    assert latest >= AT_LEAST_1S_MS and worst >= latest
    history = r.execute_command("LATENCY", "HISTORY", "rg-execution")
    assert len(history) == 1 and history[0][1] >= AT_LEAST_1S_MS


def test_no_latency_event_while_the_monitor_is_off(r):
    assert r.config_get("latency-monitor-threshold") == {"latency-monitor-threshold": "0"}
    pyexecute(r, SLEEP_SHORT)
    assert latest_rg_execution(r) is None
    # Turned on later, the module follows the new threshold.
    r.config_set("latency-monitor-threshold", 100)
    pyexecute(r, SLEEP_SHORT)
    assert latest_rg_execution(r)[2] >= 100


def test_no_latency_event_below_the_threshold(r):
    r.config_set("latency-monitor-threshold", 60_000)
    pyexecute(r, SLEEP_SHORT)
    assert latest_rg_execution(r) is None
