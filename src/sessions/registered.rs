//! Registrations on their session's home: applying what a script registered, and running the
//! executions their events start (keyspace events, triggers, hooks, followed commands).
//! Rebuilding callbacks from source and the sessions of persistence are `persisted`'s.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustpython_vm::{AsObject, VirtualMachine};

use redis_module::{Context, ContextFlags};

use crate::engine::Report;
use crate::error::GearsError;
use crate::executions::{self, Wants};
use crate::pool;
use crate::python::held::{self, Callbacks, Pending};
use crate::python::session::Origin;
use crate::python::{RawPlan, Runtime};
use crate::redis::blocked::BlockedClient;
use crate::redis::gil::with_gil;
use crate::redis::keyspace::RedisStore;
use crate::redis::log;
use crate::redis::notify;
use crate::registrations::hooks::{Chain, CommandLink};
use crate::registrations::persist;
use crate::registrations::queue::{self, QueuedEvent};
use crate::registrations::{self, ApplyBatch, Kind, Mode, Outcome, Registration, Spec};
use crate::reply::Reply;
use crate::stop::{Abort, Reason};
use crate::store::RunAs;

/// How long `onRegistered` may run: it holds the session's worker.
pub(super) const ON_REGISTERED_LIMIT: Duration = Duration::from_secs(5);

/// The session options of the RG.PYEXECUTE that runs a script.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub id: String,
    pub desc: Option<String>,
    pub upgrade: bool,
    pub replace_with: Option<String>,
    /// The client's ACL user: the body and everything the session registers run as it.
    pub run_as: RunAs,
}

impl NewSession {
    fn replaces(&self) -> Option<String> {
        self.replace_with.clone().or_else(|| self.upgrade.then(|| self.id.clone()))
    }
}

/// After a script body has run without error: applies what it registered (and, for an upgrade,
/// unregisters what it replaces), all or nothing. `Ok(false)`: it registered nothing.
pub fn apply_script(
    runtime: &Runtime,
    session: &NewSession,
    source: &str,
    db: i32,
    pending: Vec<Pending>,
) -> Result<bool, String> {
    let replaces = session.replaces();
    if pending.is_empty() && replaces.is_none() {
        return Ok(false);
    }
    let batch = ApplyBatch {
        session: session.id.clone(),
        desc: session.desc.clone(),
        source: source.to_owned(),
        home: runtime.worker().home,
        owner: owner_name(&session.run_as),
        specs: pending.iter().map(|p| p.spec.clone()).collect(),
        replaces,
    };
    for p in &pending {
        held::hold(&p.spec.id, p.callbacks.clone());
    }
    let applied = with_gil(db, |ctx| {
        // An upgrade that registers nothing of a session that does not exist changes nothing.
        if batch.specs.is_empty() && batch.replaces.as_deref().and_then(registrations::session).is_none() {
            return Ok((Vec::new(), Vec::new()));
        }
        // Applying uses up an id of each counter, even if it fails (docs/commands.md#ids).
        executions::skip_id();
        executions::next_plan_id();
        let replaced = registrations::apply(&batch)?;
        persist::replicate_batch(ctx, &batch);
        // What the new stream registrations' streams hold now is processed whatever the batch.
        let streams: Vec<_> = batch
            .specs
            .iter()
            .filter(|s| matches!(s.kind, Kind::Stream { .. }))
            .filter_map(|s| registrations::find(&s.id))
            .map(|r| {
                let found = super::streams::existing(ctx, &r);
                (r, found)
            })
            .collect();
        Ok((replaced, streams))
    });
    let replaced = match applied {
        Ok((replaced, streams)) => {
            for (registration, found) in streams {
                super::streams::process_existing(registration, found);
            }
            replaced
        }
        Err(text) => {
            pending.iter().for_each(|p| held::release(&p.spec.id));
            return Err(text);
        }
    };
    release_elsewhere(replaced);
    for p in &pending {
        on_registered(runtime, &session.id, &p.callbacks, &session.run_as);
    }
    Ok(!pending.is_empty())
}

/// The owner a session records: a module's own RG.PYEXECUTE (no user) registers as `default`.
fn owner_name(run_as: &RunAs) -> String {
    run_as.name().unwrap_or("default").to_owned()
}

/// `register()` outside a script body (a callback, a time event): joins `session` at once.
pub fn join_session(session: &str, source: &str, spec: Spec, callbacks: Callbacks) -> Result<(), String> {
    let home = pool::this_home().unwrap_or_default();
    let run_as = crate::store::current().map(|s| s.run_as()).unwrap_or_default();
    let owner = with_gil(0, |ctx| {
        // A session that had no registrations enters the session table now.
        let batch = match registrations::session(session) {
            Some((existing, _)) => ApplyBatch {
                session: existing.id.clone(),
                desc: existing.desc.clone(),
                source: existing.source.clone(),
                home: existing.home,
                owner: existing.owner.clone(),
                specs: vec![spec],
                replaces: None,
            },
            None => ApplyBatch {
                session: session.to_owned(),
                desc: None,
                source: source.to_owned(),
                home,
                owner: owner_name(&run_as),
                specs: vec![spec],
                replaces: None,
            },
        };
        registrations::apply(&batch)?;
        persist::replicate_batch(ctx, &batch);
        Ok::<String, String>(batch.owner)
    })?;
    if let Some(runtime) = pool::this_runtime() {
        on_registered(&runtime, session, &callbacks, &RunAs::user(&owner));
    }
    Ok(())
}

/// Drops, on their homes, the callbacks of registrations that are gone.
pub fn release_elsewhere(gone: Vec<Arc<Registration>>) {
    for registration in gone {
        let id = registration.spec.id.clone();
        pool::send(registration.home, Box::new(move |_| held::release(&id)));
    }
}

/// Calls a registration's `onRegistered`: its failures are only logged, and it is stopped if it
/// runs too long.
pub fn on_registered(runtime: &Runtime, session: &str, callbacks: &Callbacks, run_as: &RunAs) {
    let Some(function) = &callbacks.on_registered else { return };
    let _profiled = crate::config::with(|c| c.profile_executions == 1).then(|| runtime.profile(session));
    let _armed = runtime.arm(Abort::with_limit(ON_REGISTERED_LIMIT));
    // It may call `execute()`, in database 0 as RedisGears does.
    let _installed = crate::store::install(Rc::new(RedisStore::new(0, run_as.clone())));
    runtime.enter(|vm| match crate::python::call_callback(vm, function, ()) {
        Err(exc) => log::warning(&format!("onRegistered failed: {}", crate::python::error_text(vm, &exc))),
        Ok(value) if &*value.class().name() == "coroutine" => {
            log::warning("onRegistered returned a coroutine, which is not supported there");
        }
        Ok(_) => {}
    });
}

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
}

/// What follows an execution of a registration once it has ended: given its reply and errors.
pub type Then = Box<dyn FnOnce(&Runtime, &Reply, &[String])>;

/// Runs one execution of `registration` on its home; when it ends (now, or once its waiting
/// records have been continued) it is counted, its waiters answered, and `then` called. False
/// if it was aborted before it started (then `then` is not called). `async_allowed`: its records
/// may wait.
pub(crate) fn run(
    runtime: &Runtime,
    registration: Arc<Registration>,
    input: Input,
    db: i32,
    execution: super::Running,
    async_allowed: bool,
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
    let plan = callbacks(runtime, &registration).map(|callbacks| runtime.enter(|vm| raw_plan(vm, input, callbacks)));
    let key = execution.key().clone();
    let done: super::parked::Done = Box::new(move |runtime, ended, stopped| {
        let outcome = match ended.report.errors.first() {
            _ if stopped => Outcome::Aborted,
            None => Outcome::Success,
            Some(error) => Outcome::Failure(error.clone()),
        };
        let id = execution.key().id.clone();
        registration.live.count(outcome, started.elapsed().as_millis() as u64);
        let errors = ended.report.errors.clone();
        execution.finish(ended.reply.clone(), ended.report);
        listed(&registration, id);
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
    super::run_now(runtime, plan, db, &key, origin, async_allowed, done)
}

/// Counts the end of an execution that has finished (an abort ended it before it started).
pub fn ended(registration: &Registration, outcome: Outcome, ms: u64, id: String) {
    registration.live.count(outcome, ms);
    listed(registration, id);
}

/// A finished execution joins its registration's listed ones; those beyond the listing bound
/// are dropped.
fn listed(registration: &Registration, id: String) {
    for id in registration.live.ended(id) {
        let _ = executions::drop_execution(&id);
    }
}

fn raw_plan(vm: &VirtualMachine, input: Input, callbacks: Callbacks) -> RawPlan {
    let options = vm.ctx.new_dict();
    let (reader, arg) = match input {
        Input::Key { key, event, read_value, .. } => {
            let _ = options.set_item("readValue", vm.ctx.new_bool(read_value).into(), vm);
            let _ = options.set_item("event", vm.ctx.new_str(String::from_utf8_lossy(&event).into_owned()).into(), vm);
            ("KeysEvent", vm.ctx.new_bytes(key).into())
        }
        Input::Command(args) | Input::Hook { record: args, .. } => {
            let record = vm.ctx.new_list(args.into_iter().map(|a| crate::python::redis_string(a, vm)).collect());
            ("Records", records(vm, vec![record.into()]))
        }
        Input::Stream { key, entries } => {
            let batch = entries
                .into_iter()
                .filter_map(|(id, fields)| crate::engine::stream_record(vm, &key, id, fields).ok())
                .collect();
            ("Records", records(vm, batch))
        }
    };
    RawPlan { reader: reader.to_owned(), arg, steps: callbacks.steps, options: options.into() }
}

/// An iterator over `items`, for the `Records` reader.
fn records(vm: &VirtualMachine, items: Vec<rustpython_vm::PyObjectRef>) -> rustpython_vm::PyObjectRef {
    vm.ctx.new_list(items).as_object().get_iter(vm).map_or_else(|_| vm.ctx.none(), Into::into)
}

/// The registration's callbacks on this worker, rebuilt from its session's source if missing.
fn callbacks(runtime: &Runtime, registration: &Registration) -> Result<Callbacks, String> {
    if let Some(callbacks) = held::get(&registration.spec.id) {
        return Ok(callbacks);
    }
    super::persisted::restore(runtime, &registration.session)?;
    held::get(&registration.spec.id).ok_or_else(|| {
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
    let home = registration.home;
    let listed = matches!(caller, Caller::Nobody | Caller::Linked(_));
    let bound = crate::config::with(|c| c.max_pending_events_per_registration).max(1) as usize;
    let inline = matches!(caller, Caller::Inline(_))
        || registration.spec.mode == Mode::Sync
        || !registration.live.try_pend(bound);
    if inline && let Err(err) = super::sync::may_nest() {
        // Counted as a failed execution of the registration that would have recursed.
        registration.live.started();
        registration.live.count(Outcome::Failure(err.to_string()), 0);
        return Some(Reply::Error(err.to_string()));
    }
    let abort = Abort::new();
    // An inline execution's caller may have to wait for it after all (it goes asynchronous): it
    // is kept until claimed.
    let waits = matches!(caller, Caller::Inline(_) | Caller::Block(_));
    let keep = listed || (inline && waits);
    let key = executions::create_registered(pool::worker_of(home), keep, &registration.spec.id, abort.clone());
    let execution = super::Running::holding(key.clone(), registrations::hold_session(&registration.session));
    registration.live.started();
    // A followed command's client waits until the execution ends, waiting records included.
    let awaited = match &caller {
        Caller::Linked(link) => {
            link.wait_for_one();
            Some(Awaited(link.clone()))
        }
        _ => None,
    };
    if inline {
        // Asynchrony needs a client that can wait: not inside MULTI, Lua or `execute()`.
        let async_allowed = pool::this_home().is_none()
            && !ctx.get_flags().intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING);
        let went_async = Arc::new(AtomicBool::new(false));
        let flag = went_async.clone();
        let on_disconnect = abort.clone();
        let result = super::sync::call(ctx, home, abort, move |runtime, _| {
            let ended = Rc::new(RefCell::new(None));
            let slot = ended.clone();
            let then: Then = Box::new(move |_, reply, _| {
                *slot.borrow_mut() = Some(reply.clone());
                drop(awaited);
            });
            run(runtime, registration, input, db, execution, async_allowed, then);
            runtime.end_job();
            super::defer_nested(runtime, db);
            ended.take().unwrap_or_else(|| {
                flag.store(true, Ordering::Release);
                Reply::Null
            })
        });
        let wants = match caller {
            Caller::Inline(wants) | Caller::Block(wants) => Some(wants),
            Caller::Nobody | Caller::Linked(_) => None,
        };
        if went_async.load(Ordering::Acquire) {
            // Its records wait: its caller waits for it as for an asynchronous execution.
            if let Some(wants) = wants {
                let client = BlockedClient::block_watching(ctx, move || on_disconnect.request(Reason::Aborted));
                executions::claim(&key.id, client, wants);
            }
            return None;
        }
        if waits {
            let _ = executions::drop_execution(&key.id);
        }
        let reply = result.unwrap_or_else(|e| Reply::Error(e.to_string()));
        return Some(executions::shaped(wants.unwrap_or(Wants::Results), &reply));
    }
    if let Caller::Block(wants) = caller {
        let on_disconnect = abort.clone();
        let client = BlockedClient::block_watching(ctx, move || on_disconnect.request(crate::stop::Reason::Aborted));
        executions::add_waiter(&key.id, client, wants);
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
    send(
        home,
        Box::new(move |runtime| {
            drop(pended);
            let then: Then = Box::new(move |_, _, _| {
                drop(awaited);
                drop(journaled);
            });
            run(runtime, registration, input, db, execution, true, then);
            runtime.end_job();
            super::defer_nested(runtime, db);
        }),
    );
    None
}

/// A hooked command: its newest applicable hook runs on the command's record (`sync` inline,
/// else with the client blocked); `call_next` walks `chain`. `None`: the client was blocked.
pub fn run_hook(
    ctx: &Context,
    hook: Arc<Registration>,
    chain: Chain,
    record: Vec<Vec<u8>>,
    unblockable: bool,
) -> Result<Option<Reply>, GearsError> {
    let sync = hook.spec.mode == Mode::Sync;
    if !sync && unblockable {
        return Err(GearsError::NonSyncNotAllowed);
    }
    let db = chain.db;
    let caller = if sync { Caller::Inline(Wants::Hook) } else { Caller::Block(Wants::Hook) };
    Ok(dispatch(ctx, hook, Input::Hook { record, chain: Arc::new(chain) }, db, caller))
}

/// A hook's `call_next(*args)`: the next hook of the chain, or the command itself (which hooks
/// do not intercept again), run by the thread that holds the lock for this execution.
pub fn call_next(chain: &Chain, args: Vec<Vec<u8>>) -> Reply {
    let mut record = vec![chain.command.clone().into_bytes()];
    record.extend(args);
    let db = chain.db;
    with_gil(db, |ctx| match chain.rest.split_first() {
        Some((next, rest)) => {
            let chain = Chain { command: chain.command.clone(), rest: rest.to_vec(), db, run_as: next.run_as.clone() };
            let input = Input::Hook { record, chain: Arc::new(chain) };
            dispatch(ctx, next.clone(), input, db, Caller::Inline(Wants::Hook))
                .unwrap_or_else(|| Reply::Error(GearsError::Internal("call_next did not run".to_owned()).to_string()))
        }
        // The command itself: registrations that follow it see its events; the hook's caller
        // waits for the hook, not for them.
        None => {
            let (reply, link) = follow(ctx, record, &chain.run_as);
            link.take_reply(reply)
        }
    })
}

/// Runs a command as it was sent, with hooks off (the end of a hook chain, a command followed by
/// registrations, one replayed from the AOF or the replication link).
/// `run_as`: whom it runs as (the client that sent it, the hook's owner for `call_next`).
pub fn run_command(ctx: &Context, record: &[Vec<u8>], run_as: &RunAs) -> Reply {
    let Some((command, args)) = record.split_first() else { return Reply::Null };
    let command = String::from_utf8_lossy(command).into_owned();
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    crate::redis::filter::bypassing(|| crate::redis::call::call(ctx, run_as, &command, &args))
}

/// Runs a command with the registrations that follow it linked to the events it causes.
fn follow(ctx: &Context, record: Vec<Vec<u8>>, run_as: &RunAs) -> (Reply, Arc<CommandLink>) {
    let link = CommandLink::new(record);
    let outer = LINK.with_borrow_mut(|l| l.replace(link.clone()));
    let reply = run_command(ctx, &link.command, run_as);
    LINK.set(outer);
    (reply, link)
}

/// A command some KeysReader registrations follow (`commands=`): runs it; the events it causes
/// reach those registrations linked to it. `sync` ones run inside and may override the reply;
/// the client waits for the others (unless it cannot block: MULTI, Lua). `None`: it waits.
pub fn run_followed(ctx: &Context, record: Vec<Vec<u8>>, run_as: &RunAs, unblockable: bool) -> Option<Reply> {
    let (original, link) = follow(ctx, record, run_as);
    if unblockable || !link.awaited() {
        return Some(link.take_reply(original));
    }
    link.park(BlockedClient::block(ctx), original);
    None
}

thread_local! {
    /// The command a KeysReader registration follows, while the module runs it (`run_followed`).
    static LINK: std::cell::RefCell<Option<Arc<CommandLink>>> = const { std::cell::RefCell::new(None) };
}

/// A keyspace event (`ctx` is the write's; the thread that wrote holds the Redis lock).
pub fn on_keyspace_event(ctx: &Context, event: &[u8], key: &[u8]) {
    if !registrations::keys::any() || !notify::fires(ctx) {
        return;
    }
    let db = crate::redis::gil::selected_db(ctx);
    if event == b"xadd" {
        super::streams::on_xadd(ctx, key, db);
    }
    let link = LINK.with_borrow(Clone::clone);
    let command = link.as_ref().and_then(|l| l.command.first().cloned());
    let mut key_type = || notify::key_type(ctx, key);
    for registration in registrations::keys::listeners(event, key, &mut key_type, command.as_deref()) {
        let Kind::Keys { read_value, commands, .. } = &registration.spec.kind else { continue };
        let read_value = *read_value;
        let link = link.clone().filter(|_| commands.is_some());
        let caller = match &link {
            Some(link) => Caller::Linked(link.clone()),
            None => Caller::Nobody,
        };
        let input = Input::Key { key: key.to_vec(), event: event.to_vec(), read_value, link };
        dispatch(ctx, registration, input, db, caller);
    }
}
