//! Whole scripts, body and execution, run over a `MemoryStore`: every step, the readers, the
//! early stops (limit, a failing step, an abort) and the writes callbacks make with `execute()`.
//! Expected replies are those of tests/test_tier2_operations.py, which runs the same scripts
//! against Redis.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::report::Report;
use crate::python::{Runtime, ScriptOutcome};
use crate::reply::Reply;
use crate::stop::WorkerId;
use crate::stop::{Abort, Reason};
use crate::store::{KeyEntry, KeyPages, KeyValue, MemoryStore, Store};

type Job = Box<dyn FnOnce(&Runtime) + Send>;

/// Runs `f` on the one interpreter the tests share. It lives on a thread with a worker's stack
/// (deep recursion must end in RecursionError, not overflow), and one interpreter is built
/// once instead of once per test; tests take turns on it.
fn on_runtime<R: Send + 'static>(f: impl FnOnce(&Runtime) -> R + Send + 'static) -> R {
    static JOBS: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (jobs, queue) = channel::<Job>();
        std::thread::Builder::new()
            .name("engine-tests".to_owned())
            .stack_size(256 << 20)
            .spawn(move || {
                let runtime =
                    Runtime::new(WorkerId::default()).unwrap_or_else(|e| panic!("cannot build an interpreter: {e}"));
                for job in queue {
                    job(&runtime);
                }
            })
            .expect("the tests' interpreter thread starts");
        Mutex::new(jobs)
    });
    let (done, outcome) = channel();
    let job: Job = Box::new(move |runtime| {
        let result = catch_unwind(AssertUnwindSafe(|| f(runtime)));
        runtime.end_job();
        let _ = done.send(result);
    });
    jobs.lock().unwrap_or_else(PoisonError::into_inner).send(job).expect("the interpreter thread is alive");
    match outcome.recv().expect("the interpreter thread answers") {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// What a script left: its reply (the body's error or `OK`, or its execution's `[results,
/// errors]`), the execution's report, and the store.
struct Ran<S> {
    reply: Reply,
    report: Report,
    store: S,
}

impl<S> Ran<S> {
    fn results(&self) -> Vec<String> {
        self.parts().0
    }

    fn errors(&self) -> Vec<String> {
        self.parts().1
    }

    fn parts(&self) -> (Vec<String>, Vec<String>) {
        let texts = |reply: &Reply| match reply {
            Reply::Array(items) => items.iter().map(text).collect(),
            other => panic!("not a list: {other:?}"),
        };
        match &self.reply {
            Reply::Array(parts) if parts.len() == 2 => (texts(&parts[0]), texts(&parts[1])),
            other => panic!("not an execution's reply: {other:?}"),
        }
    }

    fn step_names(&self) -> Vec<&'static str> {
        self.report.steps.iter().map(|s| s.name).collect()
    }
}

fn text(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("not a bulk string: {other:?}"),
    }
}

/// Runs `script` as a session would: the body, then the execution it starts, both stopped by
/// `abort` and both reaching Redis through `store`.
fn run_armed<S: Store + Send + 'static>(store: S, abort: Arc<Abort>, script: &str) -> Ran<S> {
    let script = script.to_owned();
    on_runtime(move |runtime| {
        let store = Rc::new(store);
        let (reply, report) = match runtime.run_script(&script, store.clone(), abort.clone(), None, None) {
            ScriptOutcome::Failed(text) => (Reply::Error(text), Report::default()),
            ScriptOutcome::Done => (Reply::ok(), Report::default()),
            ScriptOutcome::Run(plan) => {
                runtime.begin_execution(Default::default());
                let _armed = runtime.arm(abort);
                super::run(runtime, plan, store.clone())
            }
        };
        let store = Rc::try_unwrap(store).ok().expect("the job keeps no reference to its store");
        Ran { reply, report, store }
    })
}

fn run(store: MemoryStore, script: &str) -> Ran<MemoryStore> {
    run_armed(store, Abort::new(), script)
}

/// A PythonReader script over `items` (a Python literal), as in test_tier2_operations.py.
fn run_py(ops: &str, items: &str) -> Ran<MemoryStore> {
    run(MemoryStore::default(), &format!("GB('PythonReader'){ops}.run(lambda: iter({items}))"))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn string(value: &str) -> KeyValue {
    KeyValue::String(value.as_bytes().to_vec())
}

fn bytes(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

/// `n` string keys `k0`, `k1`, ... holding their index.
fn numbered(n: usize) -> MemoryStore {
    MemoryStore::new((0..n).map(|i| (format!("k{i}"), string(&i.to_string()))))
}

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

// ----- readers ----------------------------------------------------------------------------

#[test]
fn keys_reader_records() {
    let store = MemoryStore::new([
        ("s", string("v")),
        ("h", KeyValue::Hash(vec![(bytes("f"), bytes("1"))])),
        ("l", KeyValue::List(vec![bytes("a"), bytes("b")])),
        ("z", KeyValue::ZSet),
    ]);
    let ran = run(store, "GB().map(lambda r: [r['key'], r['type'], r['value']]).run()");
    assert_eq!(
        ran.results(),
        strings(&[
            "['h', 'hash', {'f': '1'}]",
            "['l', 'list', ['a', 'b']]",
            "['s', 'string', 'v']",
            "['z', 'zset', None]"
        ])
    );
    let ran = run(numbered(3), "GB().run('k[12]', readValue=False)");
    assert_eq!(ran.results(), strings(&["{'key': 'k1', 'event': None}", "{'key': 'k2', 'event': None}"]));
    let ran = run(MemoryStore::default(), "GB().run('missing', noScan=True)");
    assert_eq!(ran.results(), strings(&["{'key': 'missing', 'value': None, 'type': 'empty', 'event': None}"]));
}

#[test]
fn keys_reader_reads_page_by_page() {
    let ran = run(numbered(25).with_page(4), "GB().count().run()");
    assert_eq!(ran.results(), strings(&["25"]));
    let ran = run(numbered(25).with_page(4), "GB().map(lambda r: r['value']).count().run()");
    assert_eq!(ran.results(), strings(&["25"]));
    assert_eq!(ran.store.pages_read(), 7);
}

#[test]
fn keys_only_reader_scans_with_execute() {
    let ran = run(numbered(12), "GB('KeysOnlyReader').run('k1*', count=3)");
    assert_eq!(ran.results(), strings(&["k1", "k10", "k11"]));
    let ran = run(numbered(2), "GB('KeysOnlyReader').run('k1', noScan=True)");
    assert_eq!(ran.results(), strings(&["k1"]));
    assert_eq!(run(numbered(2), "GB('KeysOnlyReader').run('k7', noScan=True)").results(), Vec::<String>::new());
}

#[test]
fn python_and_shards_id_readers() {
    assert_eq!(run(MemoryStore::default(), "GB('ShardsIDReader').run()").results(), strings(&["1"]));
    assert_eq!(run(MemoryStore::default(), "GB('PythonReader').run(lambda: 'one')").results(), strings(&["one"]));
    let failing = run(MemoryStore::default(), "GB('PythonReader').run(lambda: flat_error('no records'))");
    assert_eq!((failing.results(), failing.errors()), (vec![], strings(&["no records"])));
}

#[test]
fn stream_reader_needs_xread() {
    let ran = run(MemoryStore::default(), "GB('StreamReader').run('s')");
    assert_eq!((ran.results(), ran.errors()), (vec![], strings(&["ERR unknown command 'XREAD'"])));
}

// ----- failures ---------------------------------------------------------------------------

#[test]
fn a_failing_group_is_discarded_and_reading_stops() {
    let ops = ".groupby(lambda x: x, lambda k, a, r: flat_error('bad group') if k == 'b' else (a or 0) + 1)";
    let ran = run_py(ops, "['a', 'a', 'b']");
    assert_eq!((ran.results(), ran.errors()), (strings(&["{'key': 'a', 'value': 2}"]), strings(&["bad group"])));
    assert_eq!(ran.report.errors, strings(&["bad group"]));

    let ran = run_py(ops, "['a', 'b', 'a', 'c']");
    assert_eq!(ran.results(), strings(&["{'key': 'a', 'value': 1}"]), "no record is read after the error");
    let failing_reducer =
        run_py(".batchgroupby(lambda x: x, lambda k, recs: flat_error('no ' + k) if k == '2' else k)", "[1, 2, 3]");
    assert_eq!(failing_reducer.results(), strings(&["{'key': '1', 'value': '1'}", "{'key': '3', 'value': '3'}"]));
    assert_eq!(failing_reducer.errors(), strings(&["no 2"]));
}

#[test]
fn a_failing_step_stops_the_reader() {
    let script = "\
def numbers():
    for n in range(10):
        execute('INCR', 'pulled')
        yield n
GB('PythonReader').map(lambda x: flat_error('bad ' + str(x)) if x == 2 else x).run(numbers)
";
    let ran = run(MemoryStore::default(), script);
    assert_eq!((ran.results(), ran.errors()), (strings(&["0", "1"]), strings(&["bad 2"])));
    assert_eq!(ran.store.get(b"pulled"), Some(string("3")));
}

/// A store whose `ABORT` command asks the running execution to stop, the way RG.ABORTEXECUTION
/// does from another client: a deterministic point mid-pipeline.
struct AbortingStore {
    store: MemoryStore,
    abort: Arc<Abort>,
}

impl Store for AbortingStore {
    fn keys(self: Rc<Self>, pattern: &[u8], read_value: bool) -> Box<dyn KeyPages> {
        MemoryStore::pages(self, |s| &s.store, pattern, read_value)
    }

    fn read(&self, key: &[u8], read_value: bool) -> KeyEntry {
        self.store.read(key, read_value)
    }

    fn call(&self, command: &str, args: &[&[u8]]) -> Reply {
        if command == "ABORT" {
            self.abort.request(Reason::Aborted);
            return Reply::ok();
        }
        self.store.call(command, args)
    }

    fn hold(&self) -> bool {
        self.store.hold()
    }

    fn release(&self) {
        self.store.release()
    }

    fn holding(&self) -> bool {
        self.store.holding()
    }
}

#[test]
fn an_abort_mid_pipeline_ends_the_execution_with_what_it_has() {
    let script = "\
def numbers():
    for n in range(10):
        execute('INCR', 'pulled')
        yield n
GB('PythonReader').map(lambda x: execute('ABORT') if x == 3 else x).accumulate(lambda a, r: (a or 0) + 1).run(numbers)
";
    let abort = Abort::new();
    let ran = run_armed(AbortingStore { store: MemoryStore::default(), abort: abort.clone() }, abort, script);
    let (results, errors) = ran.parts();
    assert_eq!(results, Vec::<String>::new(), "the accumulator is not emitted");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("Execution was aborted"), "{errors:?}");
    assert_eq!(ran.store.store.get(b"pulled"), Some(string("4")), "nothing is read after the abort");
}

#[test]
fn an_abort_before_the_body_stops_it() {
    let abort = Abort::new();
    abort.request(Reason::Aborted);
    let ran = run_armed(MemoryStore::default(), abort, "execute('SET', 'x', '1')\nGB().run()");
    assert!(matches!(&ran.reply, Reply::Error(text) if text.contains("Execution was aborted")), "{:?}", ran.reply);
    assert_eq!(ran.store.get(b"x"), None);
}

// ----- execute() and atomic() -------------------------------------------------------------

#[test]
fn execute_writes_through_the_store() {
    let script = "\
execute('SET', 'body', 'ran')
GB('PythonReader').foreach(lambda x: execute('HSET', 'h', str(x), x * x)).run(lambda: iter([1, 2]))
";
    let ran = run(MemoryStore::default(), script);
    assert_eq!(ran.results(), strings(&["1", "2"]));
    assert_eq!(ran.store.get(b"body"), Some(string("ran")));
    assert_eq!(ran.store.get(b"h"), Some(KeyValue::Hash(vec![(bytes("1"), bytes("1")), (bytes("2"), bytes("4"))])));

    let ran = run(
        MemoryStore::new([("n", string("41"))]),
        "GB('ShardsIDReader').map(lambda x: [execute('INCR', 'n'), execute('GET', 'n'), execute('GET', 'none')]).run()",
    );
    assert_eq!(ran.results(), strings(&["[42, '42', None]"]));
}

#[test]
fn execute_errors_are_gears_errors() {
    let ran = run(MemoryStore::default(), "GB('ShardsIDReader').map(lambda x: execute('NOPE', 'a')).run()");
    // A gears.error raised in a callback's frame: the traceback form of python-error-texts.
    let errors = ran.errors();
    assert!(errors.len() == 1 && errors[0].ends_with("\"gears.error: ERR unknown command 'NOPE'\\n\"]"), "{errors:?}");
    let ran = run(MemoryStore::new([("s", string("x"))]), "execute('INCR', 's')");
    assert!(
        matches!(&ran.reply, Reply::Error(text) if text.contains("ERR value is not an integer or out of range")),
        "{:?}",
        ran.reply
    );
}

#[test]
fn atomic_blocks_hold_the_store() {
    let script = "\
import redisgears
def step(x):
    outside = redisgears.isInAtomicBlock()
    with atomic():
        inside = redisgears.isInAtomicBlock()
        execute('SET', 'a', str(x))
        try:
            with atomic():
                pass
        except Exception as e:
            nested = str(e)
    return [outside, inside, nested]
GB('ShardsIDReader').map(step).run()
";
    let ran = run(MemoryStore::default(), script);
    assert_eq!(ran.errors(), Vec::<String>::new());
    assert_eq!(ran.results(), strings(&["[False, True, 'Already inside an atomic block']"]));
    assert!(!ran.store.holding(), "the block was released");
    assert_eq!(ran.store.get(b"a"), Some(string("1")));

    // A block left open by a step (entered by hand) is released when the execution ends.
    let ran = run(MemoryStore::default(), "GB('ShardsIDReader').foreach(lambda x: atomic().__enter__()).run()");
    assert_eq!(ran.errors(), Vec::<String>::new());
    assert!(!ran.store.holding());
    let ran = run(MemoryStore::default(), "atomic().__enter__()");
    assert_eq!(ran.reply, Reply::ok());
    assert!(!ran.store.holding(), "and so is one the body left open");
}
