"""Management commands (docs/commands.md, from #rgabortexecution to #other-commands, and the
options of #rgpyexecute): RG.ABORTEXECUTION, RG.GETEXECUTION, RG.CONFIGGET / RG.CONFIGSET and the configuration table, RG.PYSTATS, RG.DUMPPLUGINS,
RG.INFOCLUSTER, RG.REFRESHCLUSTER, the retired commands, the requirement commands, and the options of
RG.PYEXECUTE.

Replies are read with the raw RESP client where the reply type matters (simple string vs bulk
string vs error element vs integer).
"""

import threading

import pytest

from conftest import (
    SHARD0,
    Error,
    Status,
    dump_executions,
    exec_id,
    gate_script,
    id_number,
    pyexecute,
    status_of,
    wait_status,
    wait_until,
)

SPIN = "def spin(x):\n    while True: pass\nGB('ShardsIDReader').map(spin).run()\n"

SPIN_SWALLOW_BASE = (
    "def spin(x):\n"
    "    while True:\n"
    "        try:\n"
    "            while True: pass\n"
    "        except BaseException:\n"
    "            pass\n"
    "GB('ShardsIDReader').map(spin).run()\n"
)

SPIN_SWALLOW_EXC = (
    "def spin(x):\n"
    "    while True:\n"
    "        try:\n"
    "            while True: pass\n"
    "        except Exception:\n"
    "            pass\n"
    "GB('ShardsIDReader').map(spin).run()\n"
)

SPIN_SLEEP = (
    "import time\n"
    "def spin(x):\n"
    "    while True:\n"
    "        time.sleep(0.01)\n"
    "GB('ShardsIDReader').map(spin).run()\n"
)

SPIN_READER = (
    "def gen():\n"
    "    n = 0\n"
    "    while True:\n"
    "        n += 1\n"
    "        if n % 1000000 == -1:\n"
    "            yield n\n"
    "GB('PythonReader').run(gen)\n"
)

OK_EXTRA = "OK - value was saved in extra config dictionary"


def kind(x):
    """Classify a raw reply element: ('status'|'error'|'bulk'|'int'|'array', value)."""
    if isinstance(x, Error):
        return ("error", str(x))
    if isinstance(x, Status):
        return ("status", str(x))
    if isinstance(x, bytes):
        return ("bulk", x.decode())
    if isinstance(x, int):
        return ("int", x)
    if isinstance(x, list):
        return ("array", x)
    return (type(x).__name__, x)


def text_ok(x, expected):
    """A non-error string element (simple or bulk string) with the given text."""
    k, v = kind(x)
    return k in ("status", "bulk") and v == expected


def check_healthy(server, r):
    assert r.ping()
    assert pyexecute(r, "GB('ShardsIDReader').run()") == [["1"], []]
    assert server.alive()


# ------------------------------------------------------------------------------------------
# 2.7 RG.ABORTEXECUTION
# ------------------------------------------------------------------------------------------


def test_abort_unknown_execution(raw):
    assert raw.call("RG.ABORTEXECUTION", "nosuch") == Error("execution does not exist")
    assert raw.call("RG.ABORTEXECUTION", exec_id(12345)) == Error("execution does not exist")


def test_abort_wrong_arity(raw):
    assert raw.call("RG.ABORTEXECUTION") == Error("ERR wrong number of arguments for 'rg.abortexecution' command")
    assert raw.call("RG.ABORTEXECUTION", "a", "b") == Error(
        "ERR wrong number of arguments for 'rg.abortexecution' command")


def test_abort_finished_execution_changes_nothing(r, raw):
    eid = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    wait_status(r, eid, "done")
    assert raw.call("RG.ABORTEXECUTION", eid) == Status("OK")
    assert status_of(r, eid) == "done"
    assert r.execute_command("RG.GETRESULTS", eid) == [["1"], []]


def test_abort_consumes_ids(r, raw):
    first = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    wait_status(r, first, "done")
    assert raw.call("RG.ABORTEXECUTION", first) == Status("OK")
    second = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert id_number(second) == id_number(first) + 2


def _abort_running(server, r, script, started=None):
    raw = server.raw()
    eid = pyexecute(r, script, "UNBLOCKING")
    wait_status(r, eid, "running")
    if started is not None:
        wait_until(started, what="the step running")
    assert raw.call("RG.ABORTEXECUTION", eid) == Status("OK")
    # ABORTEXECUTION replies once the execution has stopped
    assert status_of(r, eid) == "done"
    results, errors = r.execute_command("RG.GETRESULTS", eid)
    return results, errors


@pytest.mark.parametrize("script", [SPIN, SPIN_SWALLOW_BASE, SPIN_SWALLOW_EXC, SPIN_SLEEP],
                         ids=["while-true-pass", "except-BaseException", "except-Exception", "sleep-loop"])
def test_abort_running_python_code(server, r, script):
    results, errors = _abort_running(server, r, script)
    assert results == []
    assert len(errors) == 1 and "forcestopped" in errors[0], errors
    check_healthy(server, r)


def test_abort_spinning_reader(server, r):
    results, errors = _abort_running(server, r, SPIN_READER)
    assert results == []
    assert len(errors) == 1 and "forcestopped" in errors[0], errors
    check_healthy(server, r)


def test_abort_error_is_forcestopped_exception_text(server, r):
    # The execution ends with the text of the gears.forcestopped exception, formatted as any
    # Python error (docs/commands.md#python-error-texts): with a traceback its last line names gears.forcestopped.
    # Aborted once the step runs (it says so): an abort that lands before a callback starts has
    # no Python frame to show, and ends with the exception's text alone.
    script = "def spin(x):\n    execute('SET', 'spinning', '1')\n    while True: pass\n" \
             "GB('ShardsIDReader').map(spin).run()\n"
    results, errors = _abort_running(server, r, script, started=lambda: r.get("spinning") == "1")
    assert errors[0].startswith("['Traceback (most recent call last):\\n'"), errors
    assert "gears.forcestopped" in errors[0].rsplit("'  File", 1)[-1], errors


def test_abort_keeps_results_already_produced(server, r):
    script = (
        "def step(x):\n"
        "    if x == 'spin':\n"
        "        while True: pass\n"
        "    return x\n"
        "GB('PythonReader').map(step).run(lambda: iter(['a', 'b', 'spin']))\n"
    )
    results, errors = _abort_running(server, r, script)
    assert results == ["a", "b"]
    assert len(errors) == 1 and "forcestopped" in errors[0]


def test_abort_blocking_pyexecute_gets_reply(server, r):
    client = server.raw()
    reply = {}

    def run():
        reply["value"] = client.call("RG.PYEXECUTE", SPIN)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    listed = wait_until(lambda: [e for e, st, _ in dump_executions(r) if st == "running"],
                        what="the blocking execution to run")
    assert server.raw().call("RG.ABORTEXECUTION", listed[0]) == Status("OK")
    t.join(timeout=120)
    assert not t.is_alive()
    res = reply["value"]
    assert isinstance(res, list) and len(res) == 2, res
    assert res[0] == []
    assert len(res[1]) == 1 and type(res[1][0]) is bytes and b"forcestopped" in res[1][0], res
    wait_until(lambda: dump_executions(r) == [], what="the blocking execution to be dropped")
    check_healthy(server, r)


def test_abort_twice(server, r):
    raw = server.raw()
    eid = pyexecute(r, SPIN, "UNBLOCKING")
    wait_status(r, eid, "running")
    assert raw.call("RG.ABORTEXECUTION", eid) == Status("OK")
    assert raw.call("RG.ABORTEXECUTION", eid) == Status("OK")
    assert status_of(r, eid) == "done"
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    check_healthy(server, r)


# ------------------------------------------------------------------------------------------
# 2.8 RG.GETEXECUTION
# ------------------------------------------------------------------------------------------

PLAN_KEYS = ["status", "shards_received", "shards_completed", "results", "errors",
             "total_duration", "read_duration", "steps"]


def get_plan(r, eid, *sub):
    reply = r.execute_command("RG.GETEXECUTION", eid, *sub)
    assert isinstance(reply, list) and len(reply) == 1, reply
    entry = reply[0]
    assert len(entry) == 4 and entry[0] == "shard_id" and entry[1] == SHARD0 and entry[2] == "execution_plan", entry
    plan = entry[3]
    assert plan[0::2] == PLAN_KEYS, plan
    return dict(zip(plan[0::2], plan[1::2]))


def steps_of(plan):
    out = []
    for step in plan["steps"]:
        assert len(step) == 8 and step[0::2] == ["type", "duration", "name", "arg"], step
        assert isinstance(step[3], int), step
        out.append((step[1], step[5], step[7], step[3]))
    return out


def finished(r, script):
    eid = pyexecute(r, script, "UNBLOCKING")
    wait_status(r, eid, "done")
    return eid


def test_getexecution_layout(r):
    eid = finished(r, "def double(x):\n    return x * 2\nGB('PythonReader').map(double).run(lambda: iter([1, 2, 3]))")
    plan = get_plan(r, eid)
    assert plan["status"] == "done"
    assert plan["shards_received"] == 0 and plan["shards_completed"] == 0
    assert plan["results"] == 3
    assert plan["errors"] == []
    assert isinstance(plan["total_duration"], int) and plan["total_duration"] >= 0
    assert isinstance(plan["read_duration"], int) and plan["read_duration"] >= 0
    steps = steps_of(plan)
    # last step first: collect, the convertToStr map, the user map, the reader's record mapper
    assert [(t, n) for t, n, _a, _d in steps] == [
        ("collect", "collect"),
        ("map", "RedisGearsPy_PyCallbackMapper"),
        ("map", "RedisGearsPy_PyCallbackMapper"),
        ("map", "RedisGearsPy_ToPyRecordMapper"),
    ]
    assert steps[0][2] == "" and steps[3][2] == ""
    assert steps[1][2].startswith("<function ") and steps[1][2].endswith(">"), steps
    assert steps[2][2].startswith("<function double at "), steps
    assert [d for _t, _n, _a, d in steps] == [0, 0, 0, 0]  # ProfileExecutions is 0


def test_getexecution_subcommand_and_errors(r, raw):
    eid = finished(r, "GB('ShardsIDReader').run()")
    full = r.execute_command("RG.GETEXECUTION", eid)
    for sub in ["SHARD", "shard", "Shard"]:
        assert r.execute_command("RG.GETEXECUTION", eid, sub)[0][:3] == full[0][:3]
    assert raw.call("RG.GETEXECUTION", eid, "FOO") == Error("unknown subcommand")
    assert raw.call("RG.GETEXECUTION", eid, "CLUSTER") == Error(
        "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead")
    assert raw.call("RG.GETEXECUTION", eid, "cluster") == Error(
        "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead")
    assert raw.call("RG.GETEXECUTION", exec_id(9999)) == Error("execution plan does not exist")
    assert raw.call("RG.GETEXECUTION", "nosuch") == Error("execution plan does not exist")
    assert raw.call("RG.GETEXECUTION") == Error("ERR wrong number of arguments for 'rg.getexecution' command")


def test_getexecution_does_not_consume_ids_outside_cluster(r):
    a = finished(r, "GB('ShardsIDReader').run()")
    r.execute_command("RG.GETEXECUTION", a)
    b = pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert id_number(b) == id_number(a) + 1


def test_getexecution_with_errors(r):
    eid = finished(r, "GB('PythonReader').map(lambda x: flat_error('bad ' + str(x)) if x == 2 else x)"
                      ".run(lambda: iter([1, 2]))")
    plan = get_plan(r, eid)
    assert plan["status"] == "done"
    assert plan["errors"] == ["bad 2"]
    assert plan["results"] == 1


def test_getexecution_while_running(r):
    eid = pyexecute(r, gate_script("gate"), "UNBLOCKING")
    wait_status(r, eid, "running")
    plan = get_plan(r, eid, "SHARD")
    assert plan["status"] == "running"
    assert plan["results"] == -1
    assert plan["errors"] == []
    r.set("gate", "1")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["released"], []]
    plan = get_plan(r, eid)
    assert plan["status"] == "done" and plan["results"] == 1


# (operation source, steps in plan order, which of them carry a Python callback)
OP_STEPS = [
    ("map(f1)", [("map", "RedisGearsPy_PyCallbackMapper", True)]),
    ("flatmap(f1)", [("map", "RedisGearsPy_PyCallbackFlatMapper", True), ("flatmap", "flatmap", False)]),
    ("filter(f1)", [("filter", "RedisGearsPy_PyCallbackFilter", True)]),
    ("foreach(f1)", [("foreach", "RedisGearsPy_PyCallbackForEach", True)]),
    ("accumulate(f2)", [("accumulate", "RedisGearsPy_PyCallbackAccumulate", True)]),
    ("localgroupby(f1, f3)", [
        ("extractkey", "RedisGearsPy_PyCallbackExtractor", True),
        ("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey", True),
        ("map", "RedisGearsPy_ToPyRecordMapper", False)]),
    ("groupby(f1, f3)", [
        ("extractkey", "RedisGearsPy_PyCallbackExtractor", True),
        ("repartition", "repartition", False),
        ("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey", True),
        ("map", "RedisGearsPy_ToPyRecordMapper", False)]),
    ("batchgroupby(f1, f2)", [
        ("extractkey", "RedisGearsPy_PyCallbackExtractor", True),
        ("repartition", "repartition", False),
        ("group", "group", False),
        ("reduce", "RedisGearsPy_PyCallbackReducer", True),
        ("map", "RedisGearsPy_ToPyRecordMapper", False)]),
    ("repartition(f1)", [
        ("extractkey", "RedisGearsPy_PyCallbackExtractor", True),
        ("repartition", "repartition", False),
        ("map", "GetValueMapper", False)]),
    ("collect()", [("collect", "collect", False)]),
    ("limit(5)", [("limit", "limit", False)]),
]

ACC = ("accumulate", "RedisGearsPy_PyCallbackAccumulate", True)
COLLECT = ("collect", "collect", False)
LOCALGROUP = [("extractkey", "RedisGearsPy_PyCallbackExtractor", True),
              ("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey", True),
              ("map", "RedisGearsPy_ToPyRecordMapper", False)]
GROUP = [("extractkey", "RedisGearsPy_PyCallbackExtractor", True),
         ("repartition", "repartition", False),
         ("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey", True),
         ("map", "RedisGearsPy_ToPyRecordMapper", False)]
FLAT = [("map", "RedisGearsPy_PyCallbackFlatMapper", True), ("flatmap", "flatmap", False)]

SUGAR_STEPS = [
    ("aggregate(0, f2, f2)", [ACC, COLLECT, ACC]),
    ("count()", [ACC, COLLECT, ACC]),
    ("aggregateby(f1, 0, f3, f3)", LOCALGROUP + GROUP),
    ("countby()", LOCALGROUP + GROUP),
    ("sort()", [ACC, COLLECT, ACC, ("map", "RedisGearsPy_PyCallbackMapper", True)] + FLAT),
    ("distinct()", [ACC, COLLECT, ACC] + FLAT),
]

PRELUDE = "f1 = lambda x: x\nf2 = lambda a, r: r\nf3 = lambda k, a, r: r\n"


@pytest.mark.parametrize("op, expected", OP_STEPS + SUGAR_STEPS, ids=[o for o, _ in OP_STEPS + SUGAR_STEPS])
def test_getexecution_steps_per_operation(r, op, expected):
    eid = finished(r, PRELUDE + f"GB('ShardsIDReader').{op}.run(convertToStr=False, collect=False)")
    steps = steps_of(get_plan(r, eid))
    plan_order = list(reversed(steps))
    assert (plan_order[0][0], plan_order[0][1], plan_order[0][2]) == ("map", "RedisGearsPy_ToPyRecordMapper", "")
    got = [(t, n) for t, n, _a, _d in plan_order[1:]]
    assert got == [(t, n) for t, n, _cb in expected]
    for (t, n, a, _d), (_t, _n, cb) in zip(plan_order[1:], expected):
        if cb:
            assert a.startswith("<function ") and a.endswith(">"), (t, n, a)
        else:
            assert a == "", (t, n, a)


def test_getexecution_steps_of_avg(r):
    eid = finished(r, "GB('ShardsIDReader').avg().run(convertToStr=False, collect=False)")
    plan_order = list(reversed(steps_of(get_plan(r, eid))))
    names = [(t, n) for t, n, _a, _d in plan_order]
    assert names[0] == ("map", "RedisGearsPy_ToPyRecordMapper")
    assert names[1] == ("map", "RedisGearsPy_PyCallbackMapper")  # the extractor
    assert names[-1] == ("map", "RedisGearsPy_PyCallbackMapper")  # sum / count
    assert ("collect", "collect") in names


def test_getexecution_step_arg_is_str_of_callback(r):
    script = (
        "def my_filter(x):\n"
        "    return True\n"
        "GB('ShardsIDReader').filter(my_filter).map(lambda x: execute('SET', 'arg', str(my_filter)))"
        ".run(collect=False, convertToStr=False)\n"
    )
    eid = finished(r, script)
    plan_order = list(reversed(steps_of(get_plan(r, eid))))
    assert plan_order[1][:2] == ("filter", "RedisGearsPy_PyCallbackFilter")
    assert plan_order[1][2] == r.get("arg")


@pytest.mark.module_args("ProfileExecutions", "1")
def test_getexecution_durations_when_profiling(r):
    script = (
        "import time\n"
        "def slow_read():\n"
        "    time.sleep(0.2)\n"
        "    yield 1\n"
        "def slow_map(x):\n"
        "    time.sleep(0.2)\n"
        "    return x\n"
        "GB('PythonReader').map(slow_map).run(slow_read)\n"
    )
    eid = finished(r, script)
    plan = get_plan(r, eid)
    steps = steps_of(plan)
    user_map = steps[2]
    assert user_map[:2] == ("map", "RedisGearsPy_PyCallbackMapper")
    # a step that sleeps 200 ms takes at least that long (lower bounds only; never speed limits)
    assert user_map[3] >= 150, steps
    assert plan["read_duration"] >= 150, plan
    assert plan["total_duration"] >= 300, plan


def test_getexecution_durations_follow_configset(r):
    script = "import time\nGB('ShardsIDReader').map(lambda x: time.sleep(0.2)).run()\n"
    eid = finished(r, script)
    assert [d for *_x, d in steps_of(get_plan(r, eid))] == [0, 0, 0, 0]
    assert r.execute_command("RG.CONFIGSET", "ProfileExecutions", "1") == ["OK"]
    eid = finished(r, script)
    durations = [d for *_x, d in steps_of(get_plan(r, eid))]
    assert durations[2] >= 150, durations
    # total_duration is measured whatever ProfileExecutions says
    assert r.execute_command("RG.CONFIGSET", "ProfileExecutions", "0") == ["OK"]
    eid = finished(r, script)
    plan = get_plan(r, eid)
    assert plan["total_duration"] >= 150, plan
    assert [d for *_x, d in steps_of(plan)] == [0, 0, 0, 0]


# ------------------------------------------------------------------------------------------
# 2.9 Configuration: RG.CONFIGGET / RG.CONFIGSET
# ------------------------------------------------------------------------------------------

INT_DEFAULTS = [
    ("MaxExecutions", 1000),
    ("MaxExecutionsPerRegistration", 100),
    ("ProfileExecutions", 0),
    ("ExecutionThreads", 3),
    ("ExecutionMaxIdleTime", 5000),
    ("SendMsgRetries", 3),
    ("PythonAttemptTraceback", 1),
    ("PythonInstallReqMaxIdleTime", 30000),
    ("CreateVenv", 0),
    ("DownloadDeps", 0),
    ("ForeceDownloadDepsOnEnterprise", 0),
    ("OverridePythonAllocators", 1),
]


@pytest.mark.parametrize("name, default", INT_DEFAULTS)
def test_configget_integer_defaults(raw, name, default):
    assert raw.call("RG.CONFIGGET", name) == [default]


def test_configget_string_defaults(raw):
    assert raw.call("RG.CONFIGGET", "PythonInstallationDir") == [b"/var/opt/redislabs/modules/rg"]
    url, sha = raw.call("RG.CONFIGGET", "DependenciesUrl", "DependenciesSha256")
    assert type(url) is bytes and type(sha) is bytes, (url, sha)


def test_configget_plugin_default(raw):
    assert raw.call("RG.CONFIGGET", "Plugin") == [[]]


def test_configget_many_in_order(raw):
    assert raw.call("RG.CONFIGGET", "ExecutionThreads", "NoSuchConfig", "MaxExecutions") == [
        3, Error("(error) Unsupported config parameter: NoSuchConfig"), 1000]


def test_configget_builtin_names_case_sensitive(raw):
    assert raw.call("RG.CONFIGGET", "maxexecutions") == [Error("(error) Unsupported config parameter: maxexecutions")]
    assert raw.call("RG.CONFIGGET", "MAXEXECUTIONS") == [Error("(error) Unsupported config parameter: MAXEXECUTIONS")]
    assert raw.call("RG.CONFIGGET", "pythonattempttraceback") == [
        Error("(error) Unsupported config parameter: pythonattempttraceback")]


@pytest.mark.module_args("MaxExecutions", "7", "maxexecutionsperregistration", "9", "MyKey", "MyValue",
                         "Plugin", "/x/one.so", "Plugin", "/x/two.so", "PythonAttemptTraceback", "0",
                         "ExecutionThreads", "2", "DependenciesUrl", "http://example.invalid/deps")
def test_configget_load_arguments(r, raw):
    assert raw.call("RG.CONFIGGET", "MaxExecutions", "MaxExecutionsPerRegistration", "MyKey", "Plugin",
                    "PythonAttemptTraceback", "ExecutionThreads", "DependenciesUrl") == [
        7, 9, b"MyValue", [b"/x/one.so", b"/x/two.so"], 0, 2, b"http://example.invalid/deps"]
    # Python settings given at load are in the extra configuration; built-in ones are not
    assert pyexecute(r, "execute('SET', 'out', repr([configGet('PythonAttemptTraceback'), "
                        "configGet('MyKey'), configGet('MaxExecutions'), configGet('Plugin')]))") == "OK"
    assert r.get("out") == "['0', 'MyValue', None, None]"


@pytest.mark.parametrize("name, value", [
    ("MaxExecutions", "10"),
    ("MaxExecutions", "-1"),
    ("MaxExecutions", "0"),
    ("MaxExecutionsPerRegistration", "5"),
    ("ProfileExecutions", "1"),
    ("ExecutionMaxIdleTime", "100"),
    ("SendMsgRetries", "0"),
    ("SendMsgRetries", "7"),
])
def test_configset_builtin(raw, name, value):
    res = raw.call("RG.CONFIGSET", name, value)
    assert len(res) == 1 and text_ok(res[0], "OK"), res
    assert raw.call("RG.CONFIGGET", name) == [int(value)]


def test_configset_builtin_case_insensitive(raw):
    res = raw.call("RG.CONFIGSET", "maxexecutions", "20", "PROFILEEXECUTIONS", "1")
    assert len(res) == 2 and all(text_ok(x, "OK") for x in res), res
    assert raw.call("RG.CONFIGGET", "MaxExecutions", "ProfileExecutions") == [20, 1]


@pytest.mark.parametrize("name", ["ExecutionThreads", "Plugin"])
def test_configset_builtin_not_runtime(raw, name):
    res = raw.call("RG.CONFIGSET", name, "5", "MaxExecutions", "11")
    assert len(res) == 2, res
    assert res[0] == Error(f"(error) Config value {name} not modifiable at runtime")
    assert text_ok(res[1], "OK"), res
    assert raw.call("RG.CONFIGGET", "ExecutionThreads", "MaxExecutions") == [3, 11]


@pytest.mark.parametrize("name, value", [
    ("MaxExecutions", "abc"),
    ("MaxExecutions", "1.5"),
    ("ProfileExecutions", "x"),
    ("ExecutionMaxIdleTime", "0"),
    ("ExecutionMaxIdleTime", "-5"),
    ("SendMsgRetries", "-1"),
    ("MaxExecutionsPerRegistration", ""),
])
def test_configset_builtin_bad_value(raw, name, value):
    before = raw.call("RG.CONFIGGET", name)
    assert raw.call("RG.CONFIGSET", name, value) == [Error(f"(error) Failed setting config value {name}")]
    assert raw.call("RG.CONFIGGET", name) == before


@pytest.mark.parametrize("name", ["CreateVenv", "DownloadDeps", "ForeceDownloadDepsOnEnterprise",
                                  "OverridePythonAllocators", "DependenciesUrl", "DependenciesSha256",
                                  "PythonInstallationDir"])
def test_configset_python_setting_not_runtime(raw, name):
    before = raw.call("RG.CONFIGGET", name)
    assert raw.call("RG.CONFIGSET", name, "1") == [Error(f"(error) {name} is not configurable at runtime")]
    assert raw.call("RG.CONFIGGET", name) == before


def test_configset_python_attempt_traceback(r, raw):
    res = raw.call("RG.CONFIGSET", "PythonAttemptTraceback", "0")
    assert len(res) == 1 and text_ok(res[0], OK_EXTRA), res
    assert raw.call("RG.CONFIGGET", "PythonAttemptTraceback") == [0]
    # applied: errors lose their traceback (docs/commands.md#python-error-texts, form 3) ...
    assert raw.call("RG.PYEXECUTE", "undefined_name") == Error(
        "Error type: <class 'NameError'>, Value: name 'undefined_name' is not defined")
    # ... and stored in the extra configuration
    assert pyexecute(r, "execute('SET', 'out', configGet('PythonAttemptTraceback'))") == "OK"
    assert r.get("out") == "0"
    res = raw.call("RG.CONFIGSET", "PythonAttemptTraceback", "1")
    assert len(res) == 1 and text_ok(res[0], OK_EXTRA), res
    assert str(raw.call("RG.PYEXECUTE", "undefined_name")).startswith("['Traceback (most recent call last):\\n'")


def test_configset_python_install_req_max_idle_time(raw):
    res = raw.call("RG.CONFIGSET", "PythonInstallReqMaxIdleTime", "1234")
    assert len(res) == 1 and text_ok(res[0], OK_EXTRA), res
    assert raw.call("RG.CONFIGGET", "PythonInstallReqMaxIdleTime") == [1234]


@pytest.mark.parametrize("name, value", [
    ("PythonAttemptTraceback", "abc"),
    ("PythonInstallReqMaxIdleTime", "0"),
    ("PythonInstallReqMaxIdleTime", "x"),
])
def test_configset_python_setting_bad_value(raw, name, value):
    before = raw.call("RG.CONFIGGET", name)
    assert raw.call("RG.CONFIGSET", name, value) == [
        Error(f"Failed setting config value for key '{name}' with value '{value}'")]
    assert raw.call("RG.CONFIGGET", name) == before


def test_configset_python_setting_other_case_is_only_stored(raw):
    res = raw.call("RG.CONFIGSET", "pythonattempttraceback", "0")
    assert len(res) == 1 and text_ok(res[0], OK_EXTRA), res
    assert raw.call("RG.CONFIGGET", "PythonAttemptTraceback", "pythonattempttraceback") == [1, b"0"]
    assert str(raw.call("RG.PYEXECUTE", "undefined_name")).startswith("['Traceback (most recent call last):\\n'")


def test_configset_extra_configuration(r, raw):
    res = raw.call("RG.CONFIGSET", "MyKey", "MyValue", "Other", "1")
    assert len(res) == 2 and all(text_ok(x, OK_EXTRA) for x in res), res
    assert raw.call("RG.CONFIGGET", "MyKey", "Other") == [b"MyValue", b"1"]
    res = raw.call("RG.CONFIGSET", "MyKey", "changed")
    assert len(res) == 1 and text_ok(res[0], OK_EXTRA), res
    assert raw.call("RG.CONFIGGET", "MyKey") == [b"changed"]
    assert pyexecute(r, "execute('SET', 'out', configGet('MyKey'))") == "OK"
    assert r.get("out") == "changed"


def test_configset_missing_value(raw):
    assert raw.call("RG.CONFIGSET", "MaxExecutions") == [Error("(error) Value was not given to MaxExecutions")]
    res = raw.call("RG.CONFIGSET", "SomeKey", "1", "Dangling")
    assert len(res) == 2 and text_ok(res[0], OK_EXTRA), res
    assert res[1] == Error("(error) Value was not given to Dangling")


def test_configset_mixed_in_order(raw):
    res = raw.call("RG.CONFIGSET", "MaxExecutions", "50", "ExecutionThreads", "1", "Free", "x",
                   "SendMsgRetries", "bad", "CreateVenv", "1", "PythonAttemptTraceback", "1")
    assert len(res) == 6, res
    assert text_ok(res[0], "OK"), res
    assert res[1] == Error("(error) Config value ExecutionThreads not modifiable at runtime")
    assert text_ok(res[2], OK_EXTRA), res
    assert res[3] == Error("(error) Failed setting config value SendMsgRetries")
    assert res[4] == Error("(error) CreateVenv is not configurable at runtime")
    assert text_ok(res[5], OK_EXTRA), res
    assert raw.call("RG.CONFIGGET", "MaxExecutions", "Free", "SendMsgRetries") == [50, b"x", 3]


def test_configset_max_executions_takes_effect(r):
    assert r.execute_command("RG.CONFIGSET", "MaxExecutions", "2") == ["OK"]
    ids = []
    for _ in range(4):
        ids.append(pyexecute(r, "GB('ShardsIDReader').run()", "UNBLOCKING"))
        r.execute_command("RG.GETRESULTSBLOCKING", ids[-1])
    assert [e for e, _s, _r in dump_executions(r)] == ids[2:]


def test_load_fails_on_bad_or_missing_value(start_server):
    for args in [("ExecutionThreads", "0"), ("MaxExecutions",), ("ExecutionThreads", "many")]:
        s = start_server(*args, expect_exit=True)
        rc = s.wait_exit(timeout=60)
        assert rc is not None and rc != 0, (args, s.log_tail())


# ------------------------------------------------------------------------------------------
# 2.11 Other commands
# ------------------------------------------------------------------------------------------


def test_pystats(r, raw):
    pyexecute(r, "GB('PythonReader').map(lambda x: [x] * 100).run(lambda: iter(range(100)))")
    res = raw.call("RG.PYSTATS")
    assert isinstance(res, list) and len(res) == 6, res
    assert [kind(x)[1] for x in res[0::2]] == ["TotalAllocated", "PeakAllocated", "CurrAllocated"], res
    assert all(kind(x)[0] in ("status", "bulk") for x in res[0::2]), res
    total, peak, curr = res[1::2]
    assert all(type(v) is int for v in (total, peak, curr)), res
    assert total > 0 and total >= peak >= curr >= 0, res


def test_dumpplugins(raw):
    res = raw.call("RG.DUMPPLUGINS")
    assert len(res) == 1 and len(res[0]) == 2, res
    assert text_ok(res[0][0], "GearsPythonPlugin") and kind(res[0][1]) == ("int", 10000), res


def test_infocluster_and_refreshcluster(raw):
    assert raw.call("RG.INFOCLUSTER") == b"no cluster mode"
    assert raw.call("RG.REFRESHCLUSTER") == Status("OK")


def test_retired_commands(raw):
    assert raw.call("RG.PYEXECUTEREMOTE", "GB().run()") == b"Execute remote is not longer supported"
    assert raw.call("RG.PYEXECUTEREMOTE", "a", "b", "c") == b"Execute remote is not longer supported"
    assert raw.call("RG.PYFREEINTERPRETER") == b"Free interpreter is not longer supported"
    assert raw.call("RG.PYFREEINTERPRETER", "x") == b"Free interpreter is not longer supported"


def test_requirement_commands(raw):
    assert raw.call("RG.PYDUMPREQS") == []
    assert raw.call("RG.PYEXPORTREQ", "redis") == Error("requirement does not exists")
    assert raw.call("RG.PYEXPORTREQ") == Error("ERR wrong number of arguments for 'rg.pyexportreq' command")
    assert raw.call("RG.PYEXPORTREQ", "a", "b") == Error("ERR wrong number of arguments for 'rg.pyexportreq' command")
    assert raw.call("RG.PYIMPORTREQ", b"\x00chunk") == Error(
        "Could not satisfy requirements, Python package installation is not supported")
    assert raw.call("RG.PYIMPORTREQ", "a", "b") == Error(
        "Could not satisfy requirements, Python package installation is not supported")
    assert raw.call("RG.PYDUMPREQS") == []


# ------------------------------------------------------------------------------------------
# 1.2 / 2.10 RG.PYEXECUTE options
# ------------------------------------------------------------------------------------------

ID_ERR = "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"
REQ_ERR = "Could not satisfy requirements, Python package installation is not supported"


@pytest.mark.parametrize("opts", [
    ["ID", "abc"],
    ["DESCRIPTION", "some text with spaces"],
    ["UPGRADE"],
    ["FORCE_REINSTALL_REQUIREMENTS"],
    ["REQUIREMENTS"],
    ["id", "A-b_9", "description", "d", "upgrade", "force_reinstall_requirements", "requirements"],
    ["Upgrade", "Id", "x", "Force_Reinstall_Requirements", "Description", "", "Requirements"],
    ["UPGRADE", "ID", "x", "UPGRADE", "REQUIREMENTS"],
    ["DESCRIPTION", "ID", "ID", "ID"],
])
def test_pyexecute_options_accepted(raw, opts):
    assert raw.call("RG.PYEXECUTE", "execute('INCR', 'ran')", *opts) == Status("OK")
    assert raw.call("GET", "ran") == b"1"


def test_pyexecute_options_with_run(raw):
    assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "ID", "runid", "DESCRIPTION", "d",
                    "UPGRADE", "FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS") == [[b"1"], []]
    eid = raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "upgrade", "UnBlocking", "id", "runid")
    assert type(eid) is bytes and eid.decode().startswith(SHARD0 + "-"), eid


def test_pyexecute_id_reusable_without_registrations(raw):
    for _ in range(3):
        assert raw.call("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "ID", "same") == [[b"1"], []]
        assert raw.call("RG.PYEXECUTE", "1", "ID", "same") == Status("OK")


@pytest.mark.parametrize("opts, err", [
    (["ID"], "ID is missing"),
    (["DESCRIPTION"], "DESCRIPTION is missing"),
    (["REPLACE_WITH"], "REPLACE_WITH is missing"),
    (["UPGRADE", "id"], "ID is missing"),
    (["description"], "DESCRIPTION is missing"),
    (["replace_with"], "REPLACE_WITH is missing"),
    (["ID", "a.b"], ID_ERR),
    (["ID", "a b"], ID_ERR),
    (["ID", "caf\u00e9"], ID_ERR),
    (["ID", "{x}"], ID_ERR),
    (["FOO"], "Unknown arguments were given: FOO"),
    (["UNBLOCKING", "bar"], "Unknown arguments were given: bar"),
    (["ID", "ok", "Nope", "REQUIREMENTS", "dep"], "Unknown arguments were given: Nope"),
    (["REPLACE_WITH", "old"], "Can not replace with old, session does not exists."),
    (["ID", "new", "replace_with", "old-1"], "Can not replace with old-1, session does not exists."),
    (["REQUIREMENTS", "redis"], REQ_ERR),
    (["REQUIREMENTS", "a", "b==1.0"], REQ_ERR),
    (["REQUIREMENTS", "UNBLOCKING"], REQ_ERR),
    (["REQUIREMENTS", "ID"], REQ_ERR),
    (["requirements", "x"], REQ_ERR),
])
def test_pyexecute_option_errors(raw, opts, err):
    assert raw.call("RG.PYEXECUTE", "execute('SET', 'ran', '1')", *opts) == Error(err)
    assert raw.call("EXISTS", "ran") == 0  # refused: the script did not run


@pytest.mark.parametrize("opts, err", [
    # 3 (missing value) before 4 (bad ID)
    (["ID", "a.b", "DESCRIPTION"], "DESCRIPTION is missing"),
    # 4 (bad ID) before 5 (unknown token)
    (["ID", "a.b", "FOO"], ID_ERR),
    # 5 (unknown token) before 7 (no session to replace)
    (["REPLACE_WITH", "x", "FOO"], "Unknown arguments were given: FOO"),
    # 5 before 9 (requirements)
    (["FOO", "REQUIREMENTS", "dep"], "Unknown arguments were given: FOO"),
    # 7 before 9
    (["REPLACE_WITH", "x", "REQUIREMENTS", "dep"], "Can not replace with x, session does not exists."),
    # 4 before 9
    (["ID", "a.b", "REQUIREMENTS", "dep"], ID_ERR),
])
def test_pyexecute_option_error_order(raw, opts, err):
    assert raw.call("RG.PYEXECUTE", "execute('SET', 'ran', '1')", *opts) == Error(err)
    assert raw.call("EXISTS", "ran") == 0


def test_pyexecute_wrong_arity(raw):
    assert raw.call("RG.PYEXECUTE") == Error("ERR wrong number of arguments for 'rg.pyexecute' command")


def test_pyexecute_refused_in_multi_and_lua(raw):
    block_err = "Can not run gears inside a multi exec, lua, or when blocking is not allowed"
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "execute('SET', 'ran', '1')") == Status("QUEUED")
    assert raw.call("EXEC") == [Error(block_err)]
    res = raw.call("EVAL", "return redis.pcall('RG.PYEXECUTE', \"execute('SET', 'ran', '1')\")", "0")
    assert res == Error(block_err), res
    # Check 1 comes before every other check
    assert raw.call("MULTI") == Status("OK")
    assert raw.call("RG.PYEXECUTE", "1", "ID") == Status("QUEUED")
    assert raw.call("EXEC") == [Error(block_err)]
    assert raw.call("EXISTS", "ran") == 0
