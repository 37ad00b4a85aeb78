//! The steps, stateless and stateful, and `limit`.

use super::*;

// ----- stateless steps --------------------------------------------------------------------

#[test]
fn map_filter_foreach_collect() {
    let ran = run_py(".map(lambda x: x * 2).filter(lambda x: x % 4).foreach(lambda x: 99).collect()", "[1, 2, 3]");
    assert_eq!((ran.results(), ran.errors()), (strings(&["2", "6"]), vec![]));
    assert_eq!(ran.report.results, 2);
    assert_eq!(
        ran.step_names(),
        [
            "RedisGearsPy_ToPyRecordMapper",
            "RedisGearsPy_PyCallbackMapper",
            "RedisGearsPy_PyCallbackFilter",
            "RedisGearsPy_PyCallbackForEach",
            "collect",
            // run()'s convertToStr and collect
            "RedisGearsPy_PyCallbackMapper",
            "collect",
        ]
    );
}

#[test]
fn flatmap_emits_a_list_last_first_and_anything_else_as_one_record() {
    assert_eq!(run_py(".flatmap(lambda x: x)", "[[1, 2], [3, 4]]").results(), strings(&["2", "1", "4", "3"]));
    assert_eq!(run_py(".flatmap(lambda x: (x, x))", "[1]").results(), strings(&["(1, 1)"]));
    assert_eq!(run_py(".flatmap(lambda x: [])", "[1, 2]").results(), Vec::<String>::new());
}

#[test]
fn repartition_calls_its_extractor_and_keeps_the_record() {
    let ran = run_py(".repartition(lambda x: x['k'])", "[{'k': 1}]");
    assert_eq!(ran.results(), strings(&["{'k': 1}"]));
    assert_eq!(
        run_py(".repartition(lambda x: flat_error('extract ' + str(x)))", "[1]").errors(),
        strings(&["extract 1"])
    );
}

// ----- stateful steps ---------------------------------------------------------------------

#[test]
fn accumulate_starts_from_none_and_emits_once() {
    let ops = ".accumulate(lambda a, r: (['start'] if a is None else a) + [r])";
    assert_eq!(run_py(ops, "[1, 2, 3]").results(), strings(&["['start', 1, 2, 3]"]));
    assert_eq!(run_py(ops, "[]").results(), Vec::<String>::new(), "no input, no record");
}

#[test]
fn localgroupby_and_groupby_reduce_per_key_in_first_seen_order() {
    for op in ["localgroupby", "groupby"] {
        let ran = run_py(
            &format!(".{op}(lambda x: x['g'], lambda k, a, r: (a or 0) + r['n'])"),
            "[{'g': 'z', 'n': 1}, {'g': 'y', 'n': 2}, {'g': 'z', 'n': 3}]",
        );
        assert_eq!(ran.results(), strings(&["{'key': 'z', 'value': 4}", "{'key': 'y', 'value': 2}"]), "{op}");
    }
    let keys = run_py(".groupby(lambda x: (1, 'x'), lambda k, a, r: type(k).__name__)", "[1]");
    assert_eq!(keys.results(), strings(&["{'key': \"(1, 'x')\", 'value': 'str'}"]), "keys are strings");
}

#[test]
fn batchgroupby_hands_each_group_to_its_reducer() {
    let ran = run_py(".batchgroupby(lambda x: x % 2, lambda k, recs: [k, recs])", "[1, 2, 3, 4, 5]");
    assert_eq!(
        ran.results(),
        strings(&["{'key': '1', 'value': ['1', [1, 3, 5]]}", "{'key': '0', 'value': ['0', [2, 4]]}"])
    );
    assert_eq!(
        ran.step_names()[1..6],
        [
            "RedisGearsPy_PyCallbackExtractor",
            "repartition",
            "group",
            "RedisGearsPy_PyCallbackReducer",
            "RedisGearsPy_ToPyRecordMapper"
        ]
    );
}

#[test]
fn aggregate_and_aggregateby() {
    let sum = ".aggregate(0, lambda a, r: a + r, lambda a, r: a + r)";
    assert_eq!(run_py(sum, "[1, 2, 3]").results(), strings(&["6"]));
    assert_eq!(run_py(sum, "[]").results(), Vec::<String>::new());
    let by = ".aggregateby(lambda x: x % 2, 0, lambda k, a, r: a + r, lambda k, a, v: a + v)";
    assert_eq!(
        run_py(by, "[1, 2, 3, 4, 5]").results(),
        strings(&["{'key': '1', 'value': 9}", "{'key': '0', 'value': 6}"])
    );
}

#[test]
fn count_and_countby() {
    let ran = run(numbered(5), "GB().count().run()");
    assert_eq!((ran.results(), ran.errors()), (strings(&["5"]), vec![]));
    assert_eq!(
        ran.step_names()[1..4],
        ["RedisGearsPy_PyCallbackAccumulate", "collect", "RedisGearsPy_PyCallbackAccumulate"],
        "reported as the aggregate RedisGears runs"
    );
    assert_eq!(run(MemoryStore::default(), "GB().count().run()").results(), Vec::<String>::new());
    assert_eq!(run_py(".map(lambda x: x).count()", "[1, 2]").results(), strings(&["2"]));
    assert_eq!(
        run_py(".countby(lambda x: x % 3)", "list(range(7))").results(),
        strings(&["{'key': '0', 'value': 3}", "{'key': '1', 'value': 2}", "{'key': '2', 'value': 2}"])
    );
}

#[test]
fn sort_distinct_avg() {
    assert_eq!(run_py(".sort()", "[3, 1, 2]").results(), strings(&["1", "2", "3"]));
    assert_eq!(run_py(".sort(False)", "[3, 1, 2]").results(), strings(&["3", "2", "1"]));
    let mut distinct = run_py(".distinct()", "[1, 2, 1, 3, 2]").results();
    distinct.sort();
    assert_eq!(distinct, strings(&["1", "2", "3"]));
    assert_eq!(run_py(".avg()", "[1, 2, 3, 4]").results(), strings(&["2.5"]));
}

// ----- limit ------------------------------------------------------------------------------

#[test]
fn limit_takes_length_records_after_offset() {
    for (args, expected) in
        [("2", &["0", "1"][..]), ("2, 3", &["3", "4"]), ("3, 8", &["8", "9"]), ("2, 10", &[]), ("0", &[])]
    {
        assert_eq!(run_py(&format!(".limit({args})"), "list(range(10))").results(), strings(expected), "limit({args})");
    }
}

#[test]
fn limit_stops_reading_its_reader() {
    let endless = "\
def endless():
    n = 0
    while True:
        execute('INCR', 'pulled')
        yield n
        n += 1
GB('PythonReader').map(lambda x: x * 2).limit(3, 2).run(endless)
";
    let ran = run(MemoryStore::default(), endless);
    assert_eq!((ran.results(), ran.errors()), (strings(&["4", "6", "8"]), vec![]));
    assert_eq!(ran.store.get(b"pulled"), Some(string("5")), "not one record more than the limit needs");

    let ran = run(numbered(10).with_page(2), "GB().map(lambda r: r['key']).limit(1).run()");
    assert_eq!(ran.results(), strings(&["k0"]));
    assert_eq!(ran.store.pages_read(), 1, "the scan went no further than the first page");
}
