//! Whole scripts, body and execution, run over a `MemoryStore`: every step, the readers, the
//! early stops (limit, a failing step, an abort) and the writes callbacks make with `execute()`.
//! Expected replies are those of tests/test_tier2_operations.py, which runs the same scripts
//! against Redis.

use std::rc::Rc;
use std::sync::Arc;

use super::report::Report;
use crate::python::ScriptOutcome;
use crate::python::job::JobContext;
use crate::python::session::JobState;
use crate::python::testing::on_runtime;
use crate::reply::Reply;
use crate::stop::{Abort, Reason};
use crate::store::{KeyEntry, KeyPages, KeyValue, MemoryStore, Store};

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
                let state = Some(JobState::execution(Default::default(), false));
                let _job = runtime.enter_job(JobContext { state, store: store.clone(), abort, owner: None });
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

mod failures;
mod readers;
mod stages;
mod steps;
