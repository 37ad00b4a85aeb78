//! Running the executions registrations' events start: `dispatch` (from the thread that holds
//! the lock) chooses how each one runs by its caller and mode, `run` runs it on its home and
//! counts its end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rustpython_vm::VirtualMachine;

use redis_module::{Context, ContextFlags};

use crate::engine::Report;
use crate::executions::{self, Wants};
use crate::pool;
use crate::python::held::{self, Callbacks};
use crate::python::session::Origin;
use crate::python::{RawPlan, Runtime};
use crate::redis::blocked::BlockedClient;
use crate::registrations::hooks::{Chain, CommandLink};
use crate::registrations::queue::{self, QueuedEvent};
use crate::registrations::{self, Kind, Mode, Outcome, Registration};
use crate::reply::Reply;
use crate::stop::{Abort, Reason};

/// What started an execution of a registration.
pub enum Input {
    /// A keyspace event on `key` (`link`: caused by a command the registration follows).
    Key { key: Vec<u8>, event: Vec<u8>, read_value: bool, link: Option<Arc<CommandLink>> },
    /// A trigger's arguments: the record.
    Command(Vec<Vec<u8>>),
    /// A hooked command (the record) and where its `call_next` goes.
    Hook { record: Vec<Vec<u8>>, chain: Arc<Chain> },
    /// A batch of stream entries: `(id, [field, value, ...])`.
    Stream { key: Vec<u8>, entries: Vec<(Vec<u8>, Vec<Reply>)> },
    /// No record: another master's part of an execution a keyspace event started there.
    Nothing,
}

/// Where an execution of a registration runs.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Place {
    /// For the thread that holds the lock, which waits; `async_allowed`: its records may wait.
    Inline { async_allowed: bool },
    /// On its home, queued: an `async` one runs on every master of a cluster.
    Home,
}

/// What follows an execution of a registration once it has ended: given its reply and errors.
pub type Then = Box<dyn FnOnce(&Runtime, &Reply, &[String])>;

/// Runs one execution of `registration` on its home; when it ends (now, or once its waiting
/// records have been continued) it is counted, its waiters answered, and `then` called. False
/// if it was aborted before it started (then `then` is not called).
pub(crate) fn run_registration(
    runtime: &Runtime,
    registration: Arc<Registration>,
    input: Input,
    db: i32,
    execution: crate::jobs::Running,
    place: Place,
    then: Then,
) -> bool {
    let started = Instant::now();
    let origin = Origin {
        session: Some(registration.session.clone()),
        source: None,
        hook: match &input {
            Input::Hook { chain, .. } => Some(chain.clone()),
            _ => None,
        },
        link: match &input {
            Input::Key { link, .. } => link.clone(),
            _ => None,
        },
        run_as: registration.run_as.clone(),
    };
    let spread = (place == Place::Home).then(|| spread(&registration, &input)).flatten();
    let plan = callbacks(runtime, &registration).map(|callbacks| runtime.enter(|vm| raw_plan(vm, input, callbacks)));
    let key = execution.key().clone();
    let done: crate::jobs::parked::Done = Box::new(move |runtime, ended, stopped| {
        let outcome = match ended.report.errors.first() {
            _ if stopped => Outcome::Aborted,
            None => Outcome::Success,
            Some(error) => Outcome::Failure(error.clone()),
        };
        let id = execution.key().id.clone();
        registration.live.count(outcome, started.elapsed().as_millis() as u64);
        let errors = ended.report.errors.clone();
        execution.finish(ended.reply.clone(), ended.report);
        list_started(&registration, id);
        then(runtime, &ended.reply, &errors);
    });
    let plan = match plan {
        Ok(plan) => plan,
        Err(text) => {
            let errors = vec![text];
            let reply = Reply::results(Vec::new(), &errors);
            let report = Report { errors, ..Report::default() };
            done(runtime, crate::engine::Ended { reply, report, records: Default::default() }, false);
            return true;
        }
    };
    // Aborted before it started: ended (and counted) by the abort.
    match (spread, place) {
        (Some(work), _) => crate::jobs::distributed::initiate(runtime, plan, db, &key, origin, work, done),
        (None, Place::Inline { async_allowed }) => {
            crate::jobs::run_now(runtime, plan, db, &key, origin, async_allowed, done)
        }
        (None, Place::Home) => crate::jobs::run_now(runtime, plan, db, &key, origin, true, done),
    }
}

/// What the other masters run of an `async` registration's execution in a cluster (RedisGears:
/// a keyspace event's KeysReader reads nothing there, a trigger's arguments are re-emitted);
/// `None` if it runs here alone (other modes, hooks, followed commands, streams, stand-alone).
fn spread(registration: &Registration, input: &Input) -> Option<crate::cluster::message::Work> {
    if registration.spec.mode != Mode::Async || crate::cluster::topology().is_none() {
        return None;
    }
    let id = registration.spec.id.clone();
    match input {
        Input::Key { link: None, .. } => Some(crate::cluster::message::Work::Registration { id, args: None }),
        Input::Command(args) => Some(crate::cluster::message::Work::Registration { id, args: Some(args.clone()) }),
        _ => None,
    }
}

/// Counts the end of an execution that has finished (an abort ended it before it started).
pub fn ended(registration: &Registration, outcome: Outcome, ms: u64, id: String) {
    registration.live.count(outcome, ms);
    list_started(registration, id);
}

/// A finished execution joins its registration's listed ones; those beyond the listing bound
/// are dropped.
fn list_started(registration: &Registration, id: String) {
    for id in registration.live.ended(id) {
        let _ = executions::drop_execution(&id);
    }
}

/// The plan of an execution of a registration whose callbacks are `callbacks`, over `input`.
pub(super) fn raw_plan(vm: &VirtualMachine, input: Input, callbacks: Callbacks) -> RawPlan {
    let options = vm.ctx.new_dict();
    let (reader, arg) = match input {
        Input::Key { key, event, read_value, .. } => {
            let _ = options.set_item("readValue", vm.ctx.new_bool(read_value).into(), vm);
            let _ = options.set_item("event", vm.ctx.new_str(String::from_utf8_lossy(&event).into_owned()).into(), vm);
            ("KeysEvent", vm.ctx.new_bytes(key).into())
        }
        Input::Command(args) | Input::Hook { record: args, .. } => {
            let record = vm.ctx.new_list(args.into_iter().map(|a| crate::python::redis_string(a, vm)).collect());
            ("Records", crate::engine::records_arg(vm, vec![record.into()]))
        }
        Input::Stream { key, entries } => {
            let batch = entries
                .into_iter()
                .filter_map(|(id, fields)| crate::engine::stream_record(vm, &key, id, fields).ok())
                .collect();
            ("Records", crate::engine::records_arg(vm, batch))
        }
        Input::Nothing => ("Records", crate::engine::records_arg(vm, Vec::new())),
    };
    RawPlan { reader: reader.to_owned(), arg, steps: callbacks.steps, options: options.into() }
}

/// The registration's callbacks on this worker, rebuilt from its session's source if missing.
pub(super) fn callbacks(runtime: &Runtime, registration: &Registration) -> Result<Callbacks, String> {
    if let Some(callbacks) = held::callbacks_of(&registration.spec.id) {
        return Ok(callbacks);
    }
    super::persisted::restore(runtime, &registration.session)?;
    held::callbacks_of(&registration.spec.id).ok_or_else(|| {
        format!("the source of session {} no longer registers {}", registration.session, registration.spec.id)
    })
}

/// A pending slot of a registration, given back when its job starts or is dropped unrun.
struct Pended(Arc<Registration>);

impl Drop for Pended {
    fn drop(&mut self) {
        self.0.live.unpend();
    }
}

/// Who gets the execution's reply.
pub enum Caller {
    /// Nobody: a keyspace event's execution stays listed (up to MaxExecutionsPerRegistration).
    Nobody,
    /// The client of the running command, blocked until the execution ends and answered as it
    /// wants (a disconnect aborts the execution).
    Block(Wants),
    /// The thread that holds the lock, waiting inline (mode `sync`, or a client that cannot
    /// block): gets the reply as it wants it.
    Inline(Wants),
    /// The client of a command a KeysReader registration follows: it waits for the execution.
    Linked(Arc<CommandLink>),
}

/// An awaited execution of a followed command, counted off when it ends or is dropped unrun.
struct Awaited(Arc<CommandLink>);

impl Drop for Awaited {
    fn drop(&mut self) {
        self.0.one_done();
    }
}

/// Starts an execution of `registration` for `input`, from the thread that holds the Redis lock
/// (`ctx`): mode `sync` runs it here and now, atomically with what caused it; the other modes
/// queue it on the session's home, unless MaxPendingEventsPerRegistration events wait there
/// already: then it runs here too, which slows the writer instead of dropping the event or
/// queueing without bound. Returns the reply when it ran inline.
pub fn dispatch(
    ctx: &Context,
    registration: Arc<Registration>,
    input: Input,
    db: i32,
    caller: Caller,
) -> Option<Reply> {
    let bound = crate::config::with(|c| c.max_pending_events_per_registration).max(1) as usize;
    let inline = runs_inline(&registration.spec.mode, &caller, || registration.live.try_pend(bound));
    if inline && let Err(err) = crate::jobs::call::may_nest() {
        // Counted as a failed execution of the registration that would have recursed.
        registration.live.started();
        registration.live.count(Outcome::Failure(err.to_string()), 0);
        return Some(Reply::Error(err.to_string()));
    }
    let started = Started::new(registration, &caller, inline);
    if inline {
        run_inline(ctx, started, input, db, caller)
    } else {
        queue_on_home(ctx, started, input, db, caller);
        None
    }
}

/// Whether `dispatch` runs the execution on the thread that holds the lock: a caller that waits
/// inline, mode `sync`, or no pending slot left (`pend` takes one otherwise).
fn runs_inline(mode: &Mode, caller: &Caller, pend: impl FnOnce() -> bool) -> bool {
    matches!(caller, Caller::Inline(_)) || *mode == Mode::Sync || !pend()
}

/// An execution `dispatch` created, not yet run.
struct Started {
    registration: Arc<Registration>,
    abort: Arc<Abort>,
    execution: crate::jobs::Running,
    /// Set when a followed command's client waits for it.
    awaited: Option<Awaited>,
}

impl Started {
    fn new(registration: Arc<Registration>, caller: &Caller, inline: bool) -> Started {
        let listed = matches!(caller, Caller::Nobody | Caller::Linked(_));
        // An inline execution's caller may have to wait for it after all (it goes asynchronous):
        // it is kept until claimed.
        let keep = listed || (inline && caller.waits());
        let abort = Abort::new();
        let worker = pool::worker_of(registration.home);
        let key = executions::create_registered(worker, keep, &registration.spec.id, abort.clone());
        let execution = crate::jobs::Running::holding(key, registrations::hold_session(&registration.session));
        registration.live.started();
        // A followed command's client waits until the execution ends, waiting records included.
        let awaited = match caller {
            Caller::Linked(link) => {
                link.wait_for_one();
                Some(Awaited(link.clone()))
            }
            _ => None,
        };
        Started { registration, abort, execution, awaited }
    }
}

impl Caller {
    /// Whether the caller waits for the execution's reply.
    fn waits(&self) -> bool {
        matches!(self, Caller::Inline(_) | Caller::Block(_))
    }

    fn wants(&self) -> Option<Wants> {
        match self {
            Caller::Inline(wants) | Caller::Block(wants) => Some(*wants),
            Caller::Nobody | Caller::Linked(_) => None,
        }
    }
}

/// Runs the execution on the thread that holds the lock. If its records wait, its caller (one
/// that can block) waits for it as for an asynchronous execution.
fn run_inline(ctx: &Context, started: Started, input: Input, db: i32, caller: Caller) -> Option<Reply> {
    let Started { registration, abort, execution, awaited } = started;
    let key = execution.key().clone();
    let home = registration.home;
    // Asynchrony needs a client that can wait: not inside MULTI, Lua or `execute()`.
    let async_allowed = pool::this_home().is_none()
        && !ctx.get_flags().intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING);
    let went_async = Arc::new(AtomicBool::new(false));
    let flag = went_async.clone();
    let on_disconnect = abort.clone();
    let result = crate::jobs::call::call_on_home(ctx, home, abort, move |runtime, _| {
        let ended = Rc::new(RefCell::new(None));
        let slot = ended.clone();
        let then: Then = Box::new(move |_, reply, _| {
            *slot.borrow_mut() = Some(reply.clone());
            drop(awaited);
        });
        run_registration(runtime, registration, input, db, execution, Place::Inline { async_allowed }, then);
        runtime.end_job();
        crate::jobs::defer_nested(runtime, db);
        ended.take().unwrap_or_else(|| {
            flag.store(true, Ordering::Release);
            Reply::Null
        })
    });
    let wants = caller.wants();
    if went_async.load(Ordering::Acquire) {
        if let Some(wants) = wants {
            let client = BlockedClient::block_watching(ctx, move || on_disconnect.request(Reason::Aborted));
            executions::claim(&key.id, client, wants);
        }
        return None;
    }
    if caller.waits() {
        let _ = executions::drop_execution(&key.id);
    }
    let reply = result.unwrap_or_else(|e| Reply::Error(e.to_string()));
    Some(executions::shaped(wants.unwrap_or(Wants::Results), &reply))
}

/// Sends the execution to the registration's home; a blocking caller waits for it there.
fn queue_on_home(ctx: &Context, started: Started, input: Input, db: i32, caller: Caller) {
    let Started { registration, abort, execution, awaited } = started;
    if let Caller::Block(wants) = caller {
        let client = BlockedClient::block_watching(ctx, move || abort.request(Reason::Aborted));
        executions::add_waiter(&execution.key().id, client, wants);
    }
    // Until its execution ends, an RDB saves the event (docs/python-api.md#durability).
    let journaled = match &input {
        Input::Key { key, event, .. } => Some(queue::journal(QueuedEvent {
            registration: registration.spec.id.clone(),
            db,
            key: key.clone(),
            event: event.clone(),
        })),
        _ => None,
    };
    let pended = Pended(registration.clone());
    // A trigger's or hook's executions do not wait for one another (unless `inorder`): they
    // visit the home, which interleaves them with what it runs; the others queue there.
    let independent = matches!(registration.spec.kind, Kind::Command { inorder: false, .. });
    let send = if independent { pool::visit } else { pool::send };
    let home = registration.home;
    send(
        home,
        Box::new(move |runtime| {
            drop(pended);
            let then: Then = Box::new(move |_, _, _| {
                drop(awaited);
                drop(journaled);
            });
            run_registration(runtime, registration, input, db, execution, Place::Home, then);
            runtime.end_job();
            crate::jobs::defer_nested(runtime, db);
        }),
    );
}

#[cfg(test)]
mod tests;
