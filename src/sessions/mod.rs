//! Sessions: one RG.PYEXECUTE's script and everything it starts, on one worker home.
//!
//! A session's Python objects (its globals, the functions and plans they hold) live in its
//! home's interpreter, so everything the session runs runs there: the script body as a visit
//! (which never waits for the execution the home is running), the executions it starts as jobs
//! deferred on that worker (`created` until the worker takes them). Homes are chosen per
//! session (`pool::choose_home`), so different sessions run in parallel.
//!
//! The clients involved are answered here: the script's error, `OK`, the execution id
//! (UNBLOCKING), or the execution's `[results, errors]`; and, through `answers`, by the watchdog
//! when the worker is lost in native code.

mod answers;
pub mod apply;
pub mod dispatch;
pub mod hooks;
pub mod keyspace;
pub mod parked;
pub mod persisted;
pub mod streams;
pub mod sync;
pub mod time_events;

use std::rc::Rc;
use std::sync::Arc;

use rustpython_vm::PyObjectRef;

use crate::engine::Report;
use crate::error::GearsError;
use crate::executions::{self, ExecutionKey, Wants};
use crate::pool;
use crate::python::session::Origin;
use crate::python::{RawPlan, Runtime, ScriptOutcome, event_loop};
use crate::redis::blocked::BlockedClient;
use crate::redis::keyspace::RedisStore;
use crate::registrations::SessionRef;
use crate::reply::Reply;
use crate::stop::{Abort, Reason, WorkerId};

pub use answers::Answer;
pub use apply::NewSession;

/// Starts a session for `script`: the worker that takes its body is its home. `abort` stops the
/// body and the execution it starts: RG.ABORTEXECUTION reaches it through the execution, a
/// disconnecting client directly. If the pool is gone the visit is dropped, which answers the
/// client.
pub fn submit_script(
    script: String,
    session: NewSession,
    db: i32,
    unblocking: bool,
    client: BlockedClient,
    abort: Arc<Abort>,
) -> Result<(), GearsError> {
    pool::submit_body(Box::new(move |runtime| run_body(runtime, &script, &session, db, unblocking, client, abort)))
}

fn run_body(
    runtime: &Runtime,
    script: &str,
    session: &NewSession,
    db: i32,
    unblocking: bool,
    client: BlockedClient,
    abort: Arc<Abort>,
) {
    let body = answers::Listed::enter(abort.clone(), Answer::Client(client));
    let (outcome, registered) = body_and_registrations(runtime, script, session, db, &abort);
    runtime.end_job();
    defer_nested(runtime, db);
    // Taken by the watchdog: the client has its answer and this worker is retired.
    let Some(Answer::Client(client)) = body.leave() else { return };
    match (outcome, registered) {
        (ScriptOutcome::Failed(text), _) => client.reply(Arc::new(Reply::Error(text))),
        (_, Err(text)) => client.reply(Arc::new(Reply::Array(vec![Reply::Error(text)]))),
        (ScriptOutcome::Done, Ok(_)) => client.reply(Arc::new(Reply::ok())),
        (ScriptOutcome::Run(plan), Ok(registered)) => {
            // With registrations, the client gets `OK` and the execution stays listed.
            let key = executions::create(runtime.worker(), unblocking || registered, abort);
            if registered {
                client.reply(Arc::new(Reply::ok()));
            } else if unblocking {
                client.reply(Arc::new(Reply::bulk(key.id.as_bytes())));
            } else {
                executions::add_waiter(&key.id, client, Wants::Results);
            }
            let origin = Origin {
                session: Some(session.id.clone()),
                source: Some(script.into()),
                run_as: session.run_as.clone(),
                ..Origin::default()
            };
            defer_plan(plan, db, key, origin, None);
        }
    }
}

/// Runs a script body, then applies what it registered. `Ok(true)`: registrations were applied;
/// `Err`: applying them failed (the reply's error, naming the shard).
fn body_and_registrations(
    runtime: &Runtime,
    script: &str,
    session: &NewSession,
    db: i32,
    abort: &Arc<Abort>,
) -> (ScriptOutcome, Result<bool, String>) {
    let store = Rc::new(RedisStore::new(db, session.run_as.clone()));
    let outcome = runtime.run_script(script, store, abort.clone(), Some(session.id.clone()), None);
    let pending = runtime.take_registrations();
    if matches!(outcome, ScriptOutcome::Failed(_)) {
        return (outcome, Ok(false));
    }
    let registered = apply::apply_script(runtime, session, script, db, pending)
        .map_err(|text| format!("{}: {text}", executions::SHARD_ID));
    (outcome, registered)
}

/// Leaves an execution in state `created` on this worker, to run after the visits waiting.
/// `awaited`: the asyncio future of a coroutine awaiting it, which gets its `[results, errors]`.
fn defer_plan(plan: RawPlan, db: i32, key: ExecutionKey, origin: Origin, awaited: Option<PyObjectRef>) {
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
    let context = parked::ExecutionContext { key: Some(key.clone()), db, abort, origin, async_allowed };
    parked::run(runtime, plan, context, done);
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
    answers::abandon(abort, &error);
    for key in executions::unfinished_on(worker) {
        executions::fail(&key, error.clone());
    }
}
