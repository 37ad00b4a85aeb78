//! Early stops: a failing step or group, an abort mid-pipeline, and the writes made before.

use super::*;

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
