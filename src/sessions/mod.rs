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

pub mod apply;
pub mod dispatch;
pub mod hooks;
pub mod keyspace;
pub mod persisted;
pub mod remote;
pub mod streams;
pub mod sync;
pub mod time_events;

use std::sync::Arc;

use crate::error::GearsError;
use crate::executions::{self, Wants};
use crate::jobs::{self, Answer};
use crate::pool;
use crate::python::session::Origin;
use crate::python::{Runtime, ScriptOutcome};
use crate::redis::blocked::BlockedClient;
use crate::reply::Reply;
use crate::stop::Abort;

pub use apply::NewSession;

/// What the interpreter asks of this layer (`python::upcalls`).
pub struct SessionUpcalls;

impl crate::python::upcalls::Upcalls for SessionUpcalls {
    fn call_next(&self, chain: &crate::registrations::hooks::Chain, args: Vec<Vec<u8>>) -> Reply {
        hooks::call_next(chain, args)
    }

    fn join_session(
        &self,
        session: &str,
        source: &str,
        spec: crate::registrations::Spec,
        callbacks: crate::python::held::Callbacks,
    ) -> Result<(), String> {
        apply::join_session(session, source, spec, callbacks)
    }

    fn start_timer(
        &self,
        request: crate::python::upcalls::TimerRequest,
    ) -> Result<crate::python::upcalls::TimerStart, String> {
        time_events::start_timer(request)
    }

    fn wake(&self, owner: u64) {
        jobs::parked::wake(owner)
    }

    fn within(&self, owner: Option<u64>, f: &mut dyn FnMut()) {
        jobs::parked::within(owner, f)
    }

    fn abandon_waiting(&self) {
        jobs::parked::abandon_all()
    }
}

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
    let body = jobs::answers::Listed::enter(abort.clone(), Answer::Client(client));
    let (outcome, registered) = body_and_registrations(runtime, script, session, db, &abort);
    runtime.end_job();
    jobs::defer_nested(runtime, db);
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
            match runtime.enter(|vm| jobs::distributed::distributes(vm, &plan)) {
                true => jobs::distributed::defer_distributed(plan, db, key, origin),
                false => jobs::defer_plan(plan, db, key, origin, None),
            }
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
    let store = crate::jobs::host::store(db, session.run_as.clone());
    let outcome = runtime.run_script(script, store, abort.clone(), Some(session.id.clone()), None);
    let pending = runtime.take_registrations();
    if matches!(outcome, ScriptOutcome::Failed(_)) {
        return (outcome, Ok(false));
    }
    let registered = apply::apply_script(runtime, session, script, db, pending)
        .map_err(|text| format!("{}: {text}", executions::shard_id()));
    (outcome, registered)
}
