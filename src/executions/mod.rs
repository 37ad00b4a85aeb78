//! Executions: one run of a plan, from creation until it is dropped, and the table that lists them.

mod table;

pub use crate::ids::{next_plan_id, plan_id_seen, shard_id};

pub use table::{AbortOutcome, Dump, ExecutionKey, Lookup, State, Wants};

use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crate::error::GearsError;
use crate::redis::blocked::BlockedClient;
use crate::reply::Reply;
use crate::report::Report;
use crate::stop::{Abort, WorkerId};
use crate::unpoisoned::Unpoisoned;

static TABLE: LazyLock<Mutex<table::Table>> = LazyLock::new(|| Mutex::new(table::Table::new()));

fn table() -> MutexGuard<'static, table::Table> {
    TABLE.locked()
}

/// Uses up an execution id (applying registrations, aborts: docs/commands.md#ids).
pub fn skip_id() {
    table().skip_id();
}

/// Creates an execution in state `created` on `worker`. `keep` says whether it stays
/// listed after it ends (UNBLOCKING runs) or is dropped once its result is delivered (blocking
/// runs); `abort` is what stops it.
pub fn create(worker: WorkerId, keep: bool, abort: Arc<Abort>) -> ExecutionKey {
    let limit = crate::config::with(|c| c.max_executions);
    table().create(worker, keep, None, limit, abort)
}

/// Creates an execution started by a registration's event: listed as registered; `keep` as
/// for `create` (a trigger's is dropped after its reply).
pub fn create_registered(worker: WorkerId, keep: bool, registration: &str, abort: Arc<Abort>) -> ExecutionKey {
    let limit = crate::config::with(|c| c.max_executions);
    table().create(worker, keep, Some(registration.to_owned()), limit, abort)
}

/// Lists this shard's part of another shard's distributed execution `id` (docs/commands.md#cluster-mode),
/// under that id (`keep`: as `create`'s); `None` if it is listed already.
pub fn create_copy(worker: WorkerId, id: &str, keep: bool, abort: Arc<Abort>) -> Option<ExecutionKey> {
    let limit = crate::config::with(|c| c.max_executions);
    table().create_copy(worker, id, keep, limit, abort)
}

/// Whether execution `id` stays listed after it ends.
pub fn kept(id: &str) -> bool {
    table().kept(id)
}

/// The registration whose event started execution `id`.
pub fn registration_of(id: &str) -> Option<String> {
    table().registration_of(id)
}

/// Aborts every unfinished execution of `registration` (RG.UNREGISTER ... abortpending); those
/// that had not started end now, and their ids are returned.
pub fn abort_registration(registration: &str) -> Vec<String> {
    let not_started = table().abort_registration(registration);
    for key in &not_started {
        finish(key, Reply::results(Vec::new(), &[]), Report::default());
    }
    not_started.into_iter().map(|key| key.id).collect()
}

/// Marks the execution running. Returns what stops it, or `None` if it was aborted before it
/// started.
pub fn start(key: &ExecutionKey) -> Option<Arc<Abort>> {
    table().start(key)
}

/// Marks an execution stopped while its records waited: it ends `aborted`.
pub fn stopped_waiting(key: &ExecutionKey) {
    table().stopped_waiting(key);
}

/// Ends an execution; every waiter gets its answer, written outside the table lock.
pub fn finish(key: &ExecutionKey, reply: Reply, report: Report) {
    let reply = Arc::new(reply);
    let waiters = table().finish(key, reply.clone(), Arc::new(report));
    let ok = Arc::new(Reply::ok());
    for waiter in waiters {
        match waiter.wants {
            Wants::Results => waiter.client.reply(reply.clone()),
            Wants::Ok => waiter.client.reply(ok.clone()),
            wants => waiter.client.reply(Arc::new(shaped(wants, &reply))),
        }
    }
}

/// An execution's `[results, errors]` as the waiter wants it.
pub fn shaped(wants: Wants, reply: &Reply) -> Reply {
    match wants {
        Wants::Results => reply.clone(),
        Wants::Ok => Reply::ok(),
        Wants::Trigger => trigger_reply(reply),
        Wants::Hook => match trigger_reply(reply) {
            Reply::Array(mut results) if results.len() == 1 => results.remove(0),
            Reply::Array(_) => Reply::Error(GearsError::HookResults.to_string()),
            error => error,
        },
    }
}

/// What a trigger's caller gets: the first error if there is one, else the results.
fn trigger_reply(reply: &Reply) -> Reply {
    match reply {
        Reply::Array(parts) => match parts.as_slice() {
            [_, Reply::Array(errors)] if !errors.is_empty() => match &errors[0] {
                Reply::Bulk(e) => Reply::Error(String::from_utf8_lossy(e).into_owned()),
                other => other.clone(),
            },
            [results, _] => results.clone(),
            _ => reply.clone(),
        },
        other => other.clone(),
    }
}

/// Ends an execution that produced nothing but `error`.
pub fn fail(key: &ExecutionKey, error: String) {
    let errors = vec![error];
    finish(key, Reply::results(Vec::new(), &errors), Report { errors, ..Report::default() });
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

/// Answers `client` as it `wants` when the execution ends, or now if it has ended; then the
/// execution is dropped. For one created with `keep`, whose caller learned only after it started
/// that it must wait for it (it went asynchronous).
pub fn claim(id: &str, client: BlockedClient, wants: Wants) {
    let mut table = table();
    match table.lookup(id) {
        Lookup::Pending => {
            table.add_waiter(id, client, wants);
            table.drop_when_done(id);
        }
        Lookup::Done(reply) => {
            let _ = table.drop_finished(id);
            drop(table);
            client.reply(Arc::new(shaped(wants, &reply)));
        }
        Lookup::Missing => client.reply(Arc::new(Reply::Error(GearsError::NoSuchExecution.to_string()))),
    }
}

/// Adds `client` to the clients answered when the execution ends.
pub fn add_waiter(id: &str, client: BlockedClient, wants: Wants) {
    table().add_waiter(id, client, wants);
}

/// RG.ABORTEXECUTION. `client` is blocked (and answered `OK` when the execution has stopped)
/// only if it is running; one that has not started ends now, `aborted`, its waiters answered.
pub fn abort(id: &str, client: impl FnOnce() -> Result<BlockedClient, GearsError>) -> Result<AbortOutcome, GearsError> {
    let mut table = table();
    let outcome = table.abort(id)?;
    match &outcome {
        AbortOutcome::Stopping => table.add_waiter(id, client()?, Wants::Ok),
        AbortOutcome::NotStarted(key) => {
            drop(table);
            finish(key, Reply::results(Vec::new(), &[]), Report::default());
        }
        AbortOutcome::Ended => {}
    }
    Ok(outcome)
}

pub fn drop_execution(id: &str) -> Result<(), GearsError> {
    table().drop_finished(id)
}

pub fn dump() -> Vec<Dump> {
    table().dump()
}

/// Executions of `worker` that have not ended.
pub fn unfinished_on(worker: WorkerId) -> Vec<ExecutionKey> {
    table().unfinished_on(worker)
}

/// RG.GETEXECUTION's view of one execution: its state and, once it has ended, its report.
pub fn report(id: &str) -> Result<(State, Option<Arc<Report>>), GearsError> {
    table().report(id).ok_or(GearsError::NoSuchExecution)
}

/// This shard's entry of RG.GETEXECUTION (docs/commands.md#rggetexecution): its plan, as far as
/// it ran here.
pub fn plan_entry(id: &str) -> Result<Reply, GearsError> {
    let (state, report) = report(id)?;
    let report = report.unwrap_or_default();
    let done = matches!(state, State::Done | State::Aborted);
    let errors = if done { report.errors.iter().map(|e| Reply::bulk(e.as_bytes())).collect() } else { Vec::new() };
    // RedisGears lists the steps last to first.
    let steps = report
        .steps
        .iter()
        .rev()
        .map(|s| {
            Reply::Array(vec![
                Reply::bulk("type"),
                Reply::bulk(s.kind),
                Reply::bulk("duration"),
                Reply::Int(s.duration_ms as i64),
                Reply::bulk("name"),
                Reply::bulk(s.name),
                Reply::bulk("arg"),
                Reply::bulk(s.arg.as_bytes()),
            ])
        })
        .collect();
    let plan = Reply::Array(vec![
        Reply::bulk("status"),
        Reply::bulk(state.as_str()),
        Reply::bulk("shards_received"),
        Reply::Int(0),
        Reply::bulk("shards_completed"),
        Reply::Int(0),
        Reply::bulk("results"),
        Reply::Int(if done { report.results as i64 } else { -1 }),
        Reply::bulk("errors"),
        Reply::Array(errors),
        Reply::bulk("total_duration"),
        Reply::Int(report.total_ms as i64),
        Reply::bulk("read_duration"),
        Reply::Int(report.read_ms as i64),
        Reply::bulk("steps"),
        Reply::Array(steps),
    ]);
    Ok(Reply::Array(vec![Reply::bulk("shard_id"), Reply::bulk(shard_id()), Reply::bulk("execution_plan"), plan]))
}
