"""Operations (docs/python-api.md#gearsbuilder, #operations): every operation of GearsBuilder with
RedisGears' quirks, the callback checks and their exact error texts, and the steps' failure rules
(docs/python-api.md#operations, docs/commands.md#the-results-errors-reply).

Records are fed by a PythonReader (deterministic order) unless the test is about another reader.
Results are compared exactly; where the docs leave the order open (distinct) they are sorted.
"""

import pytest

from conftest import Error, Status, TB_START, assert_gears_error, pyexecute, script_error


def py(ops, items, run_kwargs=""):
    """A script: PythonReader over `items` (a Python literal list), then `ops`, then run()."""
    sep = ", " if run_kwargs else ""
    return f"GB('PythonReader'){ops}.run(lambda: iter({items!r}){sep}{run_kwargs})"


def run_py(r, ops, items, run_kwargs=""):
    return pyexecute(r, py(ops, items, run_kwargs))


# ------------------------------------------------------------------------------------------
# map
# ------------------------------------------------------------------------------------------


def test_map_replaces_record(r):
    assert run_py(r, ".map(lambda x: x * 2)", [1, 2, 3]) == [["2", "4", "6"], []]


def test_map_chain_keeps_order(r):
    items = list(range(200))
    assert run_py(r, ".map(lambda x: x + 1).map(lambda x: x * 10)", items) == [
        [str((i + 1) * 10) for i in items], []]


def test_map_over_keysreader(r):
    r.set("k", "v")
    assert pyexecute(r, "GB().map(lambda r: r['value'] + '!').run()") == [["v!"], []]


def test_map_convert_to_str_false_keeps_types(raw):
    assert raw.call("RG.PYEXECUTE", py(".map(lambda x: x)", [1, "a"], "convertToStr=False")) == [
        [1, b"a"], []]


# ------------------------------------------------------------------------------------------
# flatmap
# ------------------------------------------------------------------------------------------


def test_flatmap_list_emitted_in_reverse(r):
    assert pyexecute(r, "GB('ShardsIDReader').flatmap(lambda x: [1, 2, 3]).run()") == [["3", "2", "1"], []]


def test_flatmap_reverse_within_each_list_only(r):
    assert run_py(r, ".flatmap(lambda x: x)", [[1, 2], [3, 4]]) == [["2", "1", "4", "3"], []]


def test_flatmap_empty_list_emits_nothing(r):
    assert run_py(r, ".flatmap(lambda x: [])", [1, 2]) == [[], []]


@pytest.mark.parametrize("expr, expected", [
    ("(1, 2)", "(1, 2)"),
    ("'ab'", "ab"),
    ("None", "None"),
    ("{5}", "{5}"),
    ("{'a': 1}", "{'a': 1}"),
    ("7", "7"),
])
def test_flatmap_non_list_is_one_record(r, expr, expected):
    assert run_py(r, f".flatmap(lambda x: {expr})", [1]) == [[expected], []]


def test_flatmap_generator_is_one_record(r):
    results, errors = run_py(r, ".flatmap(lambda x: (i for i in range(3)))", [1])
    assert errors == []
    assert len(results) == 1 and results[0].startswith("<generator object "), results


def test_flatmap_elements_keep_their_types(raw):
    assert raw.call("RG.PYEXECUTE", py(".flatmap(lambda x: [1, 'b'])", [0], "convertToStr=False")) == [
        [b"b", 1], []]


# ------------------------------------------------------------------------------------------
# foreach, filter
# ------------------------------------------------------------------------------------------


def test_foreach_return_value_ignored(r):
    assert run_py(r, ".foreach(lambda x: 99)", [1, 2]) == [["1", "2"], []]


def test_foreach_mutation_visible_downstream(r):
    assert run_py(r, ".foreach(lambda d: d.update(b=2))", [{"a": 1}]) == [["{'a': 1, 'b': 2}"], []]


def test_foreach_passes_the_same_object(r):
    script = (
        "seen = []\n"
        "GB('PythonReader').foreach(lambda x: seen.append(id(x)))"
        ".map(lambda x: id(x) == seen[-1]).run(lambda: iter([[1], [2]]))\n"
    )
    assert pyexecute(r, script) == [["True", "True"], []]


def test_filter_keeps_truthy(r):
    assert run_py(r, ".filter(lambda x: x % 2)", list(range(6))) == [["1", "3", "5"], []]


def test_filter_truthiness_of_any_value(r):
    assert run_py(r, ".filter(lambda x: x)", [0, 1, "", "a", [], [0], None, {}]) == [
        ["1", "a", "[0]"], []]


def test_filter_passes_the_same_object(r):
    script = (
        "seen = []\n"
        "GB('PythonReader').foreach(lambda x: seen.append(id(x))).filter(lambda x: True)"
        ".map(lambda x: id(x) == seen[-1]).run(lambda: iter([[1]]))\n"
    )
    assert pyexecute(r, script) == [["True"], []]


# ------------------------------------------------------------------------------------------
# accumulate
# ------------------------------------------------------------------------------------------


def test_accumulate_starts_with_none(r):
    ops = ".accumulate(lambda a, r: (['start'] if a is None else a) + [r])"
    assert run_py(r, ops, [1, 2, 3]) == [["['start', 1, 2, 3]"], []]


def test_accumulate_sum(r):
    assert run_py(r, ".accumulate(lambda a, r: (a or 0) + r)", list(range(101))) == [["5050"], []]


def test_accumulate_no_input_no_record(r):
    assert run_py(r, ".accumulate(lambda a, r: (a or 0) + r)", []) == [[], []]


def test_accumulate_emits_final_value_even_if_falsy(r):
    assert run_py(r, ".accumulate(lambda a, r: 0)", [1, 2]) == [["0"], []]
    assert run_py(r, ".accumulate(lambda a, r: None)", [1, 2]) == [["None"], []]


def test_accumulate_failure_discards_accumulator(r):
    ops = ".accumulate(lambda a, r: flat_error('acc failed') if r == 2 else r)"
    assert run_py(r, ops, [1, 2]) == [[], ["acc failed"]]


# ------------------------------------------------------------------------------------------
# localgroupby, groupby, batchgroupby
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["localgroupby", "groupby"])
def test_groupby_output_and_first_none(r, op):
    ops = f".{op}(lambda x: x, lambda k, a, r: ['first'] if a is None else a + [r])"
    assert run_py(r, ops, ["a", "b", "a"]) == [
        ["{'key': 'a', 'value': ['first', 'a']}", "{'key': 'b', 'value': ['first']}"], []]


@pytest.mark.parametrize("op", ["localgroupby", "groupby"])
def test_groupby_counts_in_first_seen_order(r, op):
    ops = f".{op}(lambda x: x['g'], lambda k, a, r: (a or 0) + r['n'])"
    items = [{"g": "z", "n": 1}, {"g": "y", "n": 2}, {"g": "z", "n": 3}, {"g": "x", "n": 4}]
    assert run_py(r, ops, items) == [
        ["{'key': 'z', 'value': 4}", "{'key': 'y', 'value': 2}", "{'key': 'x', 'value': 4}"], []]


@pytest.mark.parametrize("op", ["localgroupby", "groupby"])
@pytest.mark.parametrize("key_expr, key_repr", [
    ("1", "'1'"),
    ("b'a'", "\"b'a'\""),
    ("(1, 'x')", "\"(1, 'x')\""),
    ("None", "'None'"),
    ("'s'", "'s'"),
])
def test_group_keys_are_strings(r, op, key_expr, key_repr):
    ops = f".{op}(lambda x: {key_expr}, lambda k, a, r: type(k).__name__ + ':' + k)"
    value_repr = repr("str:" + eval(key_repr))
    assert run_py(r, ops, [1]) == [["{'key': %s, 'value': %s}" % (key_repr, value_repr)], []]


@pytest.mark.parametrize("op", ["localgroupby", "groupby"])
def test_group_record_is_key_value_dict(r, op):
    script = (
        f"GB('PythonReader').{op}(lambda x: 'k', lambda k, a, r: r)"
        ".map(lambda d: [type(d).__name__, list(d.keys())]).run(lambda: iter([5]))"
    )
    assert pyexecute(r, script) == [["['dict', ['key', 'value']]"], []]


def test_groupby_failing_reducer_discards_group(r):
    ops = ".groupby(lambda x: x, lambda k, a, r: flat_error('bad group') if k == 'b' else (a or 0) + 1)"
    assert run_py(r, ops, ["a", "a", "b"]) == [["{'key': 'a', 'value': 2}"], ["bad group"]]


def test_groupby_no_input(r):
    assert run_py(r, ".groupby(lambda x: x, lambda k, a, r: 1)", []) == [[], []]


def test_batchgroupby_collects_records_in_arrival_order(r):
    ops = ".batchgroupby(lambda x: x % 2, lambda k, recs: recs)"
    assert run_py(r, ops, [1, 2, 3, 4, 5]) == [
        ["{'key': '1', 'value': [1, 3, 5]}", "{'key': '0', 'value': [2, 4]}"], []]


def test_batchgroupby_reducer_gets_string_key_once(r):
    ops = ".batchgroupby(lambda x: x, lambda k, recs: [type(k).__name__, k, len(recs)])"
    assert run_py(r, ops, [7, 7, 8]) == [
        ["{'key': '7', 'value': ['str', '7', 2]}", "{'key': '8', 'value': ['str', '8', 1]}"], []]


def test_batchgroupby_reducer_not_type_checked(r):
    # RedisGears does not check the reducer: the build succeeds and the call fails (no frame ran,
    # so docs/commands.md#python-error-texts form 3).
    assert run_py(r, ".batchgroupby(lambda x: x, 1)", [1]) == [
        [], ["Error type: <class 'TypeError'>, Value: 'int' object is not callable"]]


# ------------------------------------------------------------------------------------------
# repartition, collect
# ------------------------------------------------------------------------------------------


def test_repartition_keeps_records(r):
    assert run_py(r, ".repartition(lambda x: x)", [1, 2, 3]) == [["1", "2", "3"], []]


def test_repartition_extractor_is_called(r):
    assert run_py(r, ".repartition(lambda x: flat_error('extract ' + str(x)))", [1]) == [
        [], ["extract 1"]]


def test_repartition_keeps_record_object(r):
    assert run_py(r, ".repartition(lambda x: 'k')", [{"a": [1]}]) == [["{'a': [1]}"], []]


def test_collect_is_noop(r):
    assert run_py(r, ".collect().map(lambda x: x + 1).collect()", [1, 2, 3]) == [["2", "3", "4"], []]


# ------------------------------------------------------------------------------------------
# limit
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    ("2", ["0", "1"]),
    ("2, 3", ["3", "4"]),
    ("100", [str(i) for i in range(10)]),
    ("3, 8", ["8", "9"]),
    ("2, 10", []),
    ("0", []),
])
def test_limit(r, args, expected):
    assert run_py(r, f".limit({args})", list(range(10))) == [expected, []]


def test_limit_stops_reading_input(r):
    # An endless generator: the execution can only end if limit stops reading.
    script = (
        "def endless():\n"
        "    n = 0\n"
        "    while True:\n"
        "        yield n\n"
        "        n += 1\n"
        "GB('PythonReader').map(lambda x: x * 2).limit(3, 2).run(endless)\n"
    )
    assert pyexecute(r, script) == [["4", "6", "8"], []]


# ------------------------------------------------------------------------------------------
# aggregate, aggregateby
# ------------------------------------------------------------------------------------------


def test_aggregate_sum(r):
    assert run_py(r, ".aggregate(0, lambda a, r: a + r, lambda a, r: a + r)", [1, 2, 3]) == [["6"], []]


def test_aggregate_list_zero(r):
    assert run_py(r, ".aggregate([], lambda a, r: a + [r], lambda a, r: a + r)", [1, 2, 3]) == [
        ["[1, 2, 3]"], []]


def test_aggregate_zero_is_deep_copied(r):
    script = (
        "z = [[]]\n"
        "def seq(a, r):\n"
        "    a[0].append(r)\n"
        "    return a\n"
        "GB('PythonReader').aggregate(z, seq, lambda a, r: r).map(lambda x: [x, z])"
        ".run(lambda: iter([1, 2, 3]))\n"
    )
    assert pyexecute(r, script) == [["[[[1, 2, 3]], [[]]]"], []]


def test_aggregate_falsy_accumulator_replaced_on_every_call(r):
    ops = ".aggregate([7], lambda a, r: [] if r == 2 else a + [r], lambda a, r: a + r)"
    assert run_py(r, ops, [1, 2, 3]) == [["[7, 7, 3]"], []]


def test_aggregate_no_input_no_record(r):
    assert run_py(r, ".aggregate(0, lambda a, r: a + r, lambda a, r: a + r)", []) == [[], []]


def test_aggregate_accepts_any_callable(r):
    script = (
        "import operator\n"
        "GB('PythonReader').aggregate(0, operator.add, operator.add).run(lambda: iter([1, 2, 3]))\n"
    )
    assert pyexecute(r, script) == [["6"], []]


def test_aggregateby(r):
    ops = ".aggregateby(lambda x: x % 2, 0, lambda k, a, r: a + r, lambda k, a, v: a + v)"
    assert run_py(r, ops, [1, 2, 3, 4, 5]) == [
        ["{'key': '1', 'value': 9}", "{'key': '0', 'value': 6}"], []]


def test_aggregateby_zero_not_shared_between_keys(r):
    script = (
        "def seq(k, a, r):\n"
        "    a.append(r)\n"
        "    return a\n"
        "def comb(k, a, v):\n"
        "    a.extend(v)\n"
        "    return a\n"
        "z = []\n"
        "GB('PythonReader').aggregateby(lambda x: x % 2, z, seq, comb)"
        ".map(lambda d: [d['key'], d['value'], z]).run(lambda: iter([1, 2, 3, 4, 5]))\n"
    )
    assert pyexecute(r, script) == [["['1', [1, 3, 5], []]", "['0', [2, 4], []]"], []]


def test_aggregateby_reducers_get_string_key(r):
    ops = (".aggregateby(lambda x: x % 2, '', lambda k, a, r: type(k).__name__ + k,"
           " lambda k, a, v: a + '/' + v)")
    assert run_py(r, ops, [1, 2]) == [
        ["{'key': '1', 'value': '/str1'}", "{'key': '0', 'value': '/str0'}"], []]


def test_aggregateby_accepts_any_callable(r):
    script = (
        "class Ext:\n"
        "    def __call__(self, x):\n"
        "        return 'all'\n"
        "GB('PythonReader').aggregateby(Ext(), 0, lambda k, a, r: a + r, lambda k, a, v: a + v)"
        ".run(lambda: iter([1, 2, 3]))\n"
    )
    assert pyexecute(r, script) == [["{'key': 'all', 'value': 6}"], []]


# ------------------------------------------------------------------------------------------
# count, countby
# ------------------------------------------------------------------------------------------


def test_count(r, raw):
    for i in range(5):
        r.set(f"k{i}", i)
    assert pyexecute(r, "GB().count().run()") == [["5"], []]
    assert raw.call("RG.PYEXECUTE", "GB().count().run(convertToStr=False)") == [[5], []]


def test_count_no_input_no_record(r):
    assert pyexecute(r, "GB().count().run()") == [[], []]
    assert run_py(r, ".count()", []) == [[], []]


def test_countby_default_extractor(r):
    assert run_py(r, ".countby()", ["a", "b", "a"]) == [
        ["{'key': 'a', 'value': 2}", "{'key': 'b', 'value': 1}"], []]


def test_countby_extractor_and_key_repr(r):
    assert run_py(r, ".countby(lambda x: x % 3)", list(range(7))) == [
        ["{'key': '0', 'value': 3}", "{'key': '1', 'value': 2}", "{'key': '2', 'value': 2}"], []]


def test_countby_accepts_builtin(r):
    assert run_py(r, ".countby(len)", ["ab", "cd", "e"]) == [
        ["{'key': '2', 'value': 2}", "{'key': '1', 'value': 1}"], []]


def test_countby_over_keys(r):
    r.mset({"a": "x", "b": "y", "c": "x"})
    results, errors = pyexecute(r, "GB().map(lambda r: r['value']).countby().run()")
    assert errors == []
    assert sorted(results) == ["{'key': 'x', 'value': 2}", "{'key': 'y', 'value': 1}"]


def test_countby_no_input(r):
    assert run_py(r, ".countby()", []) == [[], []]


# ------------------------------------------------------------------------------------------
# sort, distinct, avg
# ------------------------------------------------------------------------------------------


def test_sort_default_ascending(r):
    assert run_py(r, ".sort()", [3, 1, 2, 5, 4]) == [["1", "2", "3", "4", "5"], []]


def test_sort_reverse_false_descending(r):
    assert run_py(r, ".sort(False)", [3, 1, 2]) == [["3", "2", "1"], []]
    assert run_py(r, ".sort(reverse=False)", ["b", "c", "a"]) == [["c", "b", "a"], []]


def test_sort_reverse_true_explicit(r):
    assert run_py(r, ".sort(True)", ["b", "c", "a"]) == [["a", "b", "c"], []]


def test_sort_keeps_types(raw):
    assert raw.call("RG.PYEXECUTE", py(".sort()", [10, 2, 33], "convertToStr=False")) == [[2, 10, 33], []]


def test_sort_no_input(r):
    assert run_py(r, ".sort()", []) == [[], []]


def test_distinct(r):
    results, errors = run_py(r, ".distinct()", ["a", "b", "a", "c", "b"])
    assert errors == []
    assert sorted(results) == ["a", "b", "c"]


def test_distinct_no_input(r):
    assert run_py(r, ".distinct()", []) == [[], []]


def test_avg_default_extractor(r):
    assert run_py(r, ".avg()", [1, 2, 3, 4]) == [["2.5"], []]
    assert run_py(r, ".avg()", ["1", "2"]) == [["1.5"], []]


def test_avg_extractor(r):
    assert run_py(r, ".avg(lambda x: x['v'])", [{"v": 1}, {"v": 5}]) == [["3.0"], []]


def test_avg_is_float_record(raw):
    assert raw.call("RG.PYEXECUTE", py(".avg()", [1, 2, 3, 4], "convertToStr=False")) == [
        [b"2.500000"], []]


def test_avg_no_input_no_record(r):
    assert run_py(r, ".avg()", []) == [[], []]


def test_avg_extractor_must_be_function(raw):
    assert_gears_error(raw, "GB().avg(1)", "map argument must be a function")


# ------------------------------------------------------------------------------------------
# GB chaining
# ------------------------------------------------------------------------------------------


def test_every_operation_returns_the_builder(r):
    ops = [
        "map(f1)", "flatmap(f1)", "foreach(f1)", "filter(f1)", "accumulate(f2)",
        "localgroupby(f1, f3)", "groupby(f1, f3)", "batchgroupby(f1, f2)", "repartition(f1)",
        "collect()", "limit(1)", "limit(1, 2)", "aggregate(0, f2, f2)", "aggregateby(f1, 0, f3, f3)",
        "count()", "countby()", "countby(f1)", "sort()", "sort(False)", "distinct()", "avg()", "avg(f1)",
    ]
    lines = [
        "f1 = lambda x: x",
        "f2 = lambda a, r: r",
        "f3 = lambda k, a, r: r",
        "bad = []",
    ]
    for op in ops:
        lines.append(f"g = GB('ShardsIDReader')\nif g.{op} is not g: bad.append({op!r})")
    lines.append("execute('SET', 'bad', repr(bad))")
    assert pyexecute(r, "\n".join(lines)) == "OK"
    assert r.get("bad") == "[]"


# ------------------------------------------------------------------------------------------
# Callback checks (docs/python-api.md#operations): arity first, then types; raised by the operation call
# ------------------------------------------------------------------------------------------

SIMPLE_OPS = ["map", "filter", "foreach", "flatmap", "accumulate", "repartition"]

NOT_FUNCTIONS = [
    "1",
    "'f'",
    "None",
    "len",                                  # builtin
    "str",                                  # class
    "functools.partial(lambda a, b: a, 1)",
    "Obj().method",                         # bound method
    "Obj()",                                # callable object
]

PRELUDE = (
    "import functools\n"
    "class Obj:\n"
    "    def method(self, x):\n"
    "        return x\n"
    "    def __call__(self, x):\n"
    "        return x\n"
)


@pytest.mark.parametrize("op", SIMPLE_OPS)
@pytest.mark.parametrize("arg", NOT_FUNCTIONS)
def test_simple_op_rejects_non_function(raw, op, arg):
    assert_gears_error(raw, PRELUDE + f"GB().{op}({arg})\n", f"{op} argument must be a function")


@pytest.mark.parametrize("op", SIMPLE_OPS)
@pytest.mark.parametrize("args", ["", "lambda x: x, lambda x: x", "1, 2"])
def test_simple_op_wrong_number_of_args(raw, op, args):
    assert_gears_error(raw, f"GB().{op}({args})", f"wrong number of args to {op} function")


@pytest.mark.parametrize("op", ["groupby", "localgroupby"])
def test_groupby_arg_checks(raw, op):
    assert_gears_error(raw, f"GB().{op}(lambda x: x)", "wrong number of args to groupby function")
    assert_gears_error(raw, f"GB().{op}(1)", "wrong number of args to groupby function")
    assert_gears_error(raw, f"GB().{op}(1, 2, 3)", "wrong number of args to groupby function")
    assert_gears_error(raw, f"GB().{op}(1, lambda k, a, r: a)", "groupby extractor argument must be a function")
    assert_gears_error(raw, f"GB().{op}(len, lambda k, a, r: a)", "groupby extractor argument must be a function")
    assert_gears_error(raw, f"GB().{op}(lambda x: x, 1)", "groupby reducer argument must be a function")
    assert_gears_error(raw, f"GB().{op}(lambda x: x, max)", "groupby reducer argument must be a function")


def test_batchgroupby_extractor_check(raw):
    assert_gears_error(raw, "GB().batchgroupby(1, lambda k, l: l)",
                       "batchgroupby extractor argument must be a function")
    assert_gears_error(raw, "GB().batchgroupby(len, lambda k, l: l)",
                       "batchgroupby extractor argument must be a function")


def test_collect_takes_no_argument(raw):
    assert_gears_error(raw, "GB().collect(1)", "wrong number of args to collect function")


@pytest.mark.parametrize("args", ["'a'", "1.5", "None", "1, 'a'", "'1', 2"])
def test_limit_argument_must_be_number(raw, args):
    assert_gears_error(raw, f"GB().limit({args})", "limit argument must be a number")


@pytest.mark.parametrize("args", ["", "1, 2, 3"])
def test_limit_takes_one_or_two_arguments(raw, args):
    text = script_error(raw, f"GB().limit({args})")
    assert text.startswith(TB_START), text


@pytest.mark.parametrize("op, cb", [
    ("map", "lambda a, b: a"),
    ("filter", "lambda: True"),
    ("foreach", "lambda a, b: a"),
    ("flatmap", "lambda: []"),
    ("accumulate", "lambda a: a"),
])
def test_callback_with_wrong_arity_fails_without_traceback(r, op, cb):
    # The call fails before any frame of the callback runs: docs/commands.md#python-error-texts form 3.
    results, errors = run_py(r, f".{op}({cb})", [1])
    assert results == []
    assert len(errors) == 1
    assert errors[0].startswith("Error type: <class 'TypeError'>, Value: "), errors


def test_group_reducer_with_wrong_arity(r):
    results, errors = run_py(r, ".groupby(lambda x: x, lambda k, a: a)", [1])
    assert results == []
    assert len(errors) == 1 and errors[0].startswith("Error type: <class 'TypeError'>, Value: "), errors


def test_callback_exception_traceback_format(r):
    results, errors = run_py(r, ".map(lambda x: undefined_name)", [1])
    assert results == []
    assert errors == [
        "['Traceback (most recent call last):\\n', "
        "'  File \"<string>\", line 1, in <lambda>\\n', "
        "\"NameError: name 'undefined_name' is not defined\\n\"]"
    ]


def test_errors_skip_later_steps(r):
    script = (
        "calls = []\n"
        "GB('PythonReader').map(lambda x: flat_error('first')).map(lambda x: calls.append(x))"
        ".run(lambda: iter([1]))\n"
    )
    assert pyexecute(r, script) == [[], ["first"]]


# ------------------------------------------------------------------------------------------
# Done-when: a big countby keeps Redis responsive (lives in test_tier2_runtime.py);
# here a moderately large countby gives the right answer.
# ------------------------------------------------------------------------------------------


def test_countby_many_keys(r, raw):
    p = r.pipeline(transaction=False)
    for i in range(3000):
        p.set(f"k:{i}", f"v{i % 7}")
    p.execute()
    results, errors = pyexecute(r, "GB().map(lambda r: r['value']).countby().run()")
    assert errors == []
    expected = sorted("{'key': 'v%d', 'value': %d}" % (j, len(range(j, 3000, 7))) for j in range(7))
    assert sorted(results) == expected
    assert raw.call("PING") == Status("PONG")
