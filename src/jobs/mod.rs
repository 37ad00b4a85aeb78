//! Jobs: how work runs on a home once something has started it. An execution is created
//! (`Running`), run on its home's worker (`run_now`), parked there while its records wait
//! (`parked`), and ended; a main-thread call runs code on a home while Redis's main thread
//! waits (`call`); whoever waits for a body or a call is found through `answers` when its
//! worker is stuck. What starts work (scripts, registrations' events) is `sessions`' business.

pub mod answers;
pub mod call;
pub mod distributed;
pub mod host;
pub mod parked;

use std::sync::Arc;

use rustpython_vm::PyObjectRef;

use crate::engine::Report;
use crate::error::GearsError;
use crate::executions::{self, ExecutionKey};
use crate::pool;
use crate::python::session::Origin;
use crate::python::{RawPlan, Runtime, event_loop};
use crate::registrations::SessionRef;
use crate::reply::Reply;
use crate::stop::{Abort, Reason, WorkerId};

pub use answers::Answer;

/// Leaves an execution in state `created` on this worker, to run after the visits waiting.
/// `awaited`: the asyncio future of a coroutine awaiting it, which gets its `[results, errors]`.
pub(crate) fn defer_plan(plan: RawPlan, db: i32, key: ExecutionKey, origin: Origin, awaited: Option<PyObjectRef>) {
    let queued = Running::new(key);
    pool::defer(Box::new(move |runtime| run_plan(runtime, plan, db, queued, origin, awaited)));
}

/// Executions that callbacks of the last job started with `run()`: independent, each dropped
/// when done; they belong to the same session.
pub(crate) fn defer_nested(runtime: &Runtime, db: i32) {
    let (plans, origin) = runtime.take_nested();
    for (plan, awaited) in plans {
        let key = executions::create(runtime.worker(), false, Abort::new());
        defer_plan(plan, db, key, origin.clone(), awaited);
    }
}

/// Runs one execution on its home's worker.
fn run_plan(
    runtime: &Runtime,
    plan: RawPlan,
    db: i32,
    execution: Running,
    origin: Origin,
    awaited: Option<PyObjectRef>,
) {
    let key = execution.key().clone();
    let done: parked::Done = Box::new(move |runtime, ended, _| {
        if let Some(awaited) = awaited {
            let (records, errors) = (ended.records.take(), &ended.report.errors);
            runtime.enter(move |vm| event_loop::set_result(vm, &awaited, records, errors));
        }
        execution.finish(ended.reply, ended.report);
    });
    run_now(runtime, plan, db, &key, origin, true, done);
    runtime.end_job();
    defer_nested(runtime, db);
}

/// Runs the plan of the execution `done` ends, unless it was aborted before it started (then
/// `done` is dropped, which ends it, and this is false). `async_allowed`: its records may wait
/// for futures. Executions are profiled per session while ProfileExecutions is 1.
pub(crate) fn run_now(
    runtime: &Runtime,
    plan: RawPlan,
    db: i32,
    key: &ExecutionKey,
    origin: Origin,
    async_allowed: bool,
    done: parked::Done,
) -> bool {
    let Some(abort) = executions::start(key) else { return false };
    let context =
        parked::ExecutionContext { key: Some(key.clone()), db, abort, origin, async_allowed, unreplied: false };
    parked::run_parked(runtime, plan, context, done);
    true
}

/// An execution that has been created. If it is dropped before it finishes (its worker
/// unwound, or was rebuilt with the execution still queued), its waiters still get an answer.
pub(crate) struct Running {
    key: Option<ExecutionKey>,
    /// The session it keeps referenced: let go before it is seen finished.
    session: Option<SessionRef>,
}

impl Running {
    pub(crate) fn new(key: ExecutionKey) -> Running {
        Running { key: Some(key), session: None }
    }

    pub(crate) fn holding(key: ExecutionKey, session: Option<SessionRef>) -> Running {
        Running { key: Some(key), session }
    }

    pub(crate) fn key(&self) -> &ExecutionKey {
        match &self.key {
            Some(key) => key,
            None => unreachable!("taken only by finish and drop"),
        }
    }

    pub(crate) fn finish(mut self, reply: Reply, report: Report) {
        self.session = None;
        if let Some(key) = self.key.take() {
            executions::finish(&key, reply, report);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.session = None;
        if let Some(key) = self.key.take() {
            executions::fail(&key, GearsError::Internal("the execution's worker failed".to_owned()).to_string());
        }
    }
}

/// Ends, with an error, what `abort` stops (a script body, a main-thread call or an execution)
/// on `worker`, stuck in native code: its clients are answered now, and so are those of the
/// other executions of that worker (waiting for it, or preempted by what got stuck), which its
/// replacement cannot run (their Python objects are in the stuck interpreter). Whatever the
/// worker reports later is ignored.
pub fn abandon(worker: WorkerId, abort: &Arc<Abort>) {
    let error = GearsError::StuckWorker(abort.reason().unwrap_or(Reason::Aborted)).to_string();
    // Its execution, if it is one, is among its worker's unfinished ones.
    answers::answer_stopped(abort, &error);
    for key in executions::unfinished_on(worker) {
        executions::fail(&key, error.clone());
    }
}
