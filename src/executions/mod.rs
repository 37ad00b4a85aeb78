//! Executions: one run of a plan, from creation until it is dropped, and the table that lists them.

mod table;

pub use table::{Dump, ExecutionKey, Lookup, State, Wants};

use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use crate::engine::{self, Report};
use crate::error::GearsError;
use crate::python::interrupt::{Abort, Reason};
use crate::python::{RawPlan, Runtime, ScriptOutcome};
use crate::redis::blocked::BlockedClient;
use crate::redis::keyspace::RedisStore;
use crate::redis::reply::Reply;

static TABLE: LazyLock<Mutex<table::Table>> = LazyLock::new(|| Mutex::new(table::Table::new()));

fn table() -> MutexGuard<'static, table::Table> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shard id outside cluster mode: forty zeros.
pub const SHARD_ID: &str = "0000000000000000000000000000000000000000";

/// Creates an execution in state `created`. `keep` says whether it stays listed after it ends
/// (UNBLOCKING runs) or is dropped once its result is delivered (blocking runs); `abort` is
/// what stops it.
fn create(keep: bool, abort: Arc<Abort>) -> ExecutionKey {
    let limit = crate::config::with(|c| c.max_executions);
    table().create(keep, limit, abort)
}

/// Ends an execution; every waiter gets its answer, written outside the table lock.
fn finish(key: &ExecutionKey, reply: Reply, report: Report) {
    let reply = Arc::new(reply);
    let waiters = table().finish(key, reply.clone(), Arc::new(report));
    let ok = Arc::new(Reply::ok());
    for waiter in waiters {
        match waiter.wants {
            Wants::Results => waiter.client.reply(reply.clone()),
            Wants::Ok => waiter.client.reply(ok.clone()),
        }
    }
}

pub fn results(id: &str) -> Result<Arc<Reply>, GearsError> {
    match table().lookup(id) {
        Lookup::Missing => Err(GearsError::NoSuchExecution),
        Lookup::Pending => Err(GearsError::StillRunning),
        Lookup::Done(reply) => Ok(reply),
    }
}

/// Answers `client` with the execution's reply now if it has ended, or when it ends.
pub fn wait(id: &str, client: impl FnOnce() -> BlockedClient) -> Result<Option<Arc<Reply>>, GearsError> {
    let mut table = table();
    match table.lookup(id) {
        Lookup::Missing => Err(GearsError::NoSuchExecution),
        Lookup::Done(reply) => Ok(Some(reply)),
        Lookup::Pending => {
            table.add_waiter(id, client(), Wants::Results);
            Ok(None)
        }
    }
}

/// RG.ABORTEXECUTION. `client` is blocked (and answered `OK` when the execution has stopped)
/// only if it is still running; `Ok(true)` means the caller answers `OK` now.
pub fn abort(id: &str, client: impl FnOnce() -> Result<BlockedClient, GearsError>) -> Result<bool, GearsError> {
    let mut table = table();
    if !table.abort(id)? {
        return Ok(true);
    }
    table.add_waiter(id, client()?, Wants::Ok);
    Ok(false)
}

pub fn drop_execution(id: &str) -> Result<(), GearsError> {
    table().drop_finished(id)
}

pub fn dump() -> Vec<Dump> {
    table().dump()
}

/// RG.PYEXECUTE clients whose script body is running, by the stop request of their script. A
/// body has no execution yet, so this is where the watchdog finds its client.
static BODIES: LazyLock<Mutex<Vec<(Arc<Abort>, BlockedClient)>>> = LazyLock::new(|| Mutex::new(Vec::new()));

fn bodies() -> MutexGuard<'static, Vec<(Arc<Abort>, BlockedClient)>> {
    BODIES.lock().unwrap_or_else(PoisonError::into_inner)
}

fn take_body_client(abort: &Arc<Abort>) -> Option<BlockedClient> {
    let mut bodies = bodies();
    let at = bodies.iter().position(|(a, _)| Arc::ptr_eq(a, abort))?;
    Some(bodies.swap_remove(at).1)
}

/// Ends, with an error, what `abort` stops (a script body or an execution) because its worker
/// is stuck in native code: its clients are answered now. Whatever the worker reports later
/// is ignored.
pub fn abandon(abort: &Arc<Abort>) {
    let error = GearsError::StuckWorker(abort.reason().unwrap_or(Reason::Aborted)).to_string();
    if let Some(client) = take_body_client(abort) {
        client.reply(Arc::new(Reply::Error(error)));
        return;
    }
    let key = table().find_by_abort(abort);
    if let Some(key) = key {
        let errors = vec![error];
        finish(&key, Reply::results(Vec::new(), &errors), Report { errors, ..Report::default() });
    }
}

/// RG.GETEXECUTION's view of one execution: its state and, once it has ended, its report.
pub fn report(id: &str) -> Result<(State, Option<Arc<Report>>), GearsError> {
    table().report(id).ok_or(GearsError::NoSuchExecution)
}

/// Runs a script on a worker and answers its RG.PYEXECUTE client (SPEC 1.2): the error, `OK`,
/// the execution id (UNBLOCKING), or the execution's `[results, errors]`.
///
/// `abort` stops the script and the execution it starts: RG.ABORTEXECUTION reaches it through
/// the execution, a disconnecting client directly.
pub fn run_script(
    runtime: &mut Runtime,
    script: &str,
    db: i32,
    unblocking: bool,
    client: BlockedClient,
    abort: Arc<Abort>,
) {
    let body = Body::enter(abort.clone(), client);
    let outcome = runtime.run_script(script, db, abort.clone());
    // Taken by the watchdog: the client has its answer and this worker is retired.
    let Some(client) = body.leave() else { return };
    match outcome {
        ScriptOutcome::Failed(text) => client.reply(Arc::new(Reply::Error(text))),
        ScriptOutcome::Done => client.reply(Arc::new(Reply::ok())),
        ScriptOutcome::Run(plan) => {
            let key = create(unblocking, abort);
            if unblocking {
                client.reply(Arc::new(Reply::bulk(key.id.as_bytes())));
            } else {
                table().add_waiter(&key.id, client, Wants::Results);
            }
            run_plan(runtime, plan, db, key);
        }
    }
    runtime.end_job();
}

/// Runs an execution, then any that its callbacks started with `run()` (each dropped when done).
fn run_plan(runtime: &mut Runtime, plan: RawPlan, db: i32, key: ExecutionKey) {
    let store = RedisStore { db };
    let mut next = Some((plan, key));
    let mut nested = Vec::new();
    while let Some((plan, key)) = next.take() {
        let started = table().start(&key);
        let running = Running(Some(key));
        let (reply, report) = match started {
            Some(abort) => {
                let _armed = runtime.arm(abort);
                let outcome = engine::run(runtime, plan, &store);
                // A step that entered atomic() without leaving it must not keep Redis locked.
                crate::redis::gil::release();
                outcome
            }
            None => (Reply::results(Vec::new(), &[]), Report::default()), // aborted before it started
        };
        running.finish(reply, report);
        nested.extend(runtime.take_nested());
        next = nested.pop().map(|plan| (plan, create(false, Abort::new())));
    }
}

/// A script body running on this worker, its client listed in `BODIES`. If the worker unwinds,
/// the client is dropped, which answers it.
struct Body(Arc<Abort>);

impl Body {
    fn enter(abort: Arc<Abort>, client: BlockedClient) -> Body {
        bodies().push((abort.clone(), client));
        Body(abort)
    }

    fn leave(self) -> Option<BlockedClient> {
        take_body_client(&self.0)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        drop(take_body_client(&self.0));
    }
}

/// A started execution. If its worker unwinds before it finishes, waiters still get an answer.
struct Running(Option<ExecutionKey>);

impl Running {
    fn finish(mut self, reply: Reply, report: Report) {
        if let Some(key) = self.0.take() {
            finish(&key, reply, report);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(key) = self.0.take() {
            let errors = vec![GearsError::Internal("the execution's worker failed".to_owned()).to_string()];
            finish(&key, Reply::results(Vec::new(), &errors), Report { errors, ..Report::default() });
        }
    }
}
