//! Registrations on their session's home: applying what a script registered, running the
//! executions their events start, and rebuilding a session's callbacks from its source where
//! the home's interpreter does not hold them (after a restart, a load, a replaced worker).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustpython_vm::{AsObject, VirtualMachine};

use redis_module::Context;

use crate::engine::Report;
use crate::executions::{self, ExecutionKey, Wants};
use crate::pool;
use crate::python::held::{self, Callbacks, Pending};
use crate::python::{RawPlan, Runtime, ScriptOutcome};
use crate::redis::blocked::BlockedClient;
use crate::redis::gil::with_gil;
use crate::redis::keyspace::RedisStore;
use crate::redis::log;
use crate::redis::notify;
use crate::registrations::persist::{self, SavedSession};
use crate::registrations::{self, Batch, Kind, Mode, Outcome, Registration, Spec};
use crate::reply::Reply;
use crate::stop::Abort;

/// How long `onRegistered` may run: it holds the session's worker.
const ON_REGISTERED_LIMIT: Duration = Duration::from_secs(5);

/// The session options of the RG.PYEXECUTE that runs a script.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub id: String,
    pub desc: Option<String>,
    pub upgrade: bool,
    pub replace_with: Option<String>,
}

impl NewSession {
    fn replaces(&self) -> Option<String> {
        self.replace_with.clone().or_else(|| self.upgrade.then(|| self.id.clone()))
    }
}

/// After a script body has run without error: applies what it registered (and, for an upgrade,
/// unregisters what it replaces), all or nothing. `Ok(false)`: there was nothing to apply.
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
    let batch = Batch {
        session: session.id.clone(),
        desc: session.desc.clone(),
        source: source.to_owned(),
        home: runtime.worker().home,
        specs: pending.iter().map(|p| p.spec.clone()).collect(),
        replaces,
    };
    for p in &pending {
        held::hold(&p.spec.id, p.callbacks.clone());
    }
    let applied = with_gil(db, |ctx| {
        let replaced = registrations::apply(&batch)?;
        // Applying uses up an id of each counter (docs/commands.md#ids).
        executions::skip_id();
        executions::next_plan_id();
        persist::replicate_batch(ctx, &batch);
        let streams: Vec<_> = batch
            .specs
            .iter()
            .filter(|s| matches!(s.kind, Kind::Stream { .. }))
            .filter_map(|s| registrations::find(&s.id))
            .collect();
        Ok((replaced, streams))
    });
    let replaced = match applied {
        Ok((replaced, streams)) => {
            streams.into_iter().for_each(super::streams::scan);
            replaced
        }
        Err(text) => {
            pending.iter().for_each(|p| held::release(&p.spec.id));
            return Err(text);
        }
    };
    release_elsewhere(replaced);
    for p in &pending {
        on_registered(runtime, &p.callbacks);
    }
    Ok(true)
}

/// `register()` outside a script body: joins `session` at once.
pub fn apply_one(session: &str, spec: Spec) -> Result<(), String> {
    with_gil(0, |ctx| {
        let Some((existing, _)) = registrations::session(session) else {
            return Err("the session of this code has no registrations to join".to_owned());
        };
        let batch = Batch {
            session: existing.id.clone(),
            desc: existing.desc.clone(),
            source: existing.source.clone(),
            home: existing.home,
            specs: vec![spec],
            replaces: None,
        };
        registrations::apply(&batch)?;
        persist::replicate_batch(ctx, &batch);
        Ok(())
    })
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
pub fn on_registered(runtime: &Runtime, callbacks: &Callbacks) {
    let Some(function) = &callbacks.on_registered else { return };
    let _armed = runtime.arm(Abort::with_limit(ON_REGISTERED_LIMIT));
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
    /// A keyspace event on `key`.
    Key { key: Vec<u8>, event: Vec<u8>, read_value: bool },
    /// A trigger's or hooked command's arguments: the record.
    Command(Vec<Vec<u8>>),
    /// A batch of stream entries: `(id, [field, value, ...])`.
    Stream { key: Vec<u8>, entries: Vec<(Vec<u8>, Vec<Reply>)> },
}

/// Runs one execution of `registration` on its home (a job sent there). `pended`: the event
/// held one of the registration's pending slots.
pub fn run(
    runtime: &Runtime,
    registration: &Registration,
    input: Input,
    db: i32,
    key: &ExecutionKey,
) -> (Reply, Report) {
    let started = Instant::now();
    let callbacks = match callbacks(runtime, registration) {
        Ok(callbacks) => callbacks,
        Err(text) => return failed(registration, key, text, started),
    };
    let plan = runtime.enter(|vm| raw_plan(vm, input, callbacks));
    let (reply, report, stopped) = super::run_now(runtime, plan, db, key, Some(registration.session.clone()));
    let outcome = match report.errors.first() {
        None => Outcome::Success,
        Some(_) if stopped => Outcome::Aborted,
        Some(error) => Outcome::Failure(error.clone()),
    };
    finished(registration, outcome, started.elapsed().as_millis() as u64, key);
    (reply, report)
}

/// Counts an execution's end; drops the registration's executions beyond its listing bound.
fn finished(registration: &Registration, outcome: Outcome, ms: u64, key: &ExecutionKey) {
    for id in registration.live.ended(outcome, ms, Some(key.id.clone())) {
        let _ = executions::drop_execution(&id);
    }
}

fn failed(registration: &Registration, key: &ExecutionKey, text: String, started: Instant) -> (Reply, Report) {
    finished(registration, Outcome::Failure(text.clone()), started.elapsed().as_millis() as u64, key);
    let errors = vec![text];
    (Reply::results(Vec::new(), &errors), Report { errors, ..Report::default() })
}

fn raw_plan(vm: &VirtualMachine, input: Input, callbacks: Callbacks) -> RawPlan {
    let options = vm.ctx.new_dict();
    let (reader, arg) = match input {
        Input::Key { key, event, read_value } => {
            let _ = options.set_item("readValue", vm.ctx.new_bool(read_value).into(), vm);
            let _ = options.set_item("event", vm.ctx.new_str(String::from_utf8_lossy(&event).into_owned()).into(), vm);
            ("KeysEvent", vm.ctx.new_bytes(key).into())
        }
        Input::Command(args) => {
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
    restore(runtime, &registration.session)?;
    held::get(&registration.spec.id).ok_or_else(|| {
        format!("the source of session {} no longer registers {}", registration.session, registration.spec.id)
    })
}

/// Rebuilds session `id`'s callbacks on this worker: runs its source again, with its `execute()`
/// writes and `run()` left out, its `register()` calls taking their old ids; calls
/// `onRegistered` of each.
pub fn restore(runtime: &Runtime, id: &str) -> Result<(), String> {
    // The registry is read with the Redis lock held (see `registrations`).
    let Some((session, _)) = with_gil(0, |_| registrations::session(id)) else {
        return Err(format!("session {id} does not exist"));
    };
    let ids: VecDeque<String> = session.registrations.iter().cloned().collect();
    let outcome = runtime.run_script(
        &session.source,
        Rc::new(RedisStore { db: 0 }),
        Abort::with_limit(ON_REGISTERED_LIMIT),
        Some(id.to_owned()),
        Some(ids),
    );
    let pending = runtime.take_registrations();
    runtime.end_job();
    if let ScriptOutcome::Failed(text) = outcome {
        return Err(format!("restoring session {id} failed: {text}"));
    }
    for p in pending {
        held::hold(&p.spec.id, p.callbacks.clone());
        on_registered(runtime, &p.callbacks);
    }
    Ok(())
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
    /// The client of the running command, blocked until the execution ends and answered as
    /// `Wants::Trigger` says (a disconnect aborts the execution).
    Block,
    /// The thread that holds the lock, waiting inline (mode `sync`, or a client that cannot
    /// block): gets the reply.
    Inline,
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
    let listed = matches!(caller, Caller::Nobody);
    let bound = crate::config::with(|c| c.max_pending_events_per_registration).max(1) as usize;
    let inline =
        matches!(caller, Caller::Inline) || registration.spec.mode == Mode::Sync || !registration.live.try_pend(bound);
    let abort = Abort::new();
    let key = executions::create_registered(pool::worker_of(home), listed, &registration.spec.id, abort.clone());
    let session = registrations::hold_session(&registration.session);
    registration.live.started();
    if inline {
        let execution = super::Running(Some(key.clone()));
        let result = super::sync::call(ctx, home, abort, move |runtime, _| {
            let (reply, report) = run(runtime, &registration, input, db, execution.key());
            execution.finish(reply.clone(), report);
            runtime.end_job();
            super::defer_nested(runtime, db);
            drop(session);
            reply
        });
        let reply = result.unwrap_or_else(|e| Reply::Error(e.to_string()));
        return Some(executions::trigger_reply(&reply));
    }
    if let Caller::Block = caller {
        let on_disconnect = abort.clone();
        let client = BlockedClient::block_watching(ctx, move || on_disconnect.request(crate::stop::Reason::Aborted));
        executions::add_waiter(&key.id, client, Wants::Trigger);
    }
    let execution = super::Running(Some(key));
    let pended = Pended(registration.clone());
    pool::send(
        home,
        Box::new(move |runtime| {
            drop(pended);
            let (reply, report) = run(runtime, &registration, input, db, execution.key());
            execution.finish(reply, report);
            runtime.end_job();
            super::defer_nested(runtime, db);
            drop(session);
        }),
    );
    None
}

/// Sync executions started by events inside sync executions, on this thread: a registration that
/// triggers itself synchronously stops here instead of recursing without bound.
const MAX_SYNC_DEPTH: usize = 16;

thread_local! {
    static SYNC_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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
    let mut key_type = || notify::key_type(ctx, key);
    for registration in registrations::keys::listeners(event, key, &mut key_type, None) {
        let Kind::Keys { read_value, .. } = registration.spec.kind else { continue };
        let depth = SYNC_DEPTH.get();
        if depth >= MAX_SYNC_DEPTH {
            log::warning(&format!(
                "rustgears: registration {} not run: events nested {MAX_SYNC_DEPTH} deep (it triggers itself?)",
                registration.spec.id
            ));
            continue;
        }
        SYNC_DEPTH.set(depth + 1);
        let input = Input::Key { key: key.to_vec(), event: event.to_vec(), read_value };
        dispatch(ctx, registration, input, db, Caller::Nobody);
        SYNC_DEPTH.set(depth);
    }
}

/// A session from an RDB, the AOF or the replication link: applied as it was saved (same ids),
/// its callbacks rebuilt on its new home (which calls `onRegistered` again).
pub fn load(saved: SavedSession) {
    let Ok(home) = pool::choose_home() else { return };
    for spec in &saved.specs {
        executions::plan_id_seen(&spec.id);
    }
    let batch = saved.into_batch(home);
    match registrations::apply(&batch) {
        Err(text) => log::warning(&format!("rustgears: session {} not restored: {text}", batch.session)),
        Ok(gone) => {
            release_elsewhere(gone);
            let id = batch.session.clone();
            pool::send(
                home,
                Box::new(move |runtime| {
                    if let Err(text) = restore(runtime, &id) {
                        log::warning(&format!("rustgears: {text}"));
                    }
                }),
            );
        }
    }
}

/// Loading starts: what it loads replaces every registration.
pub fn loading_started() {
    registrations::clear();
    for home in 0..pool::homes() {
        pool::send(home, Box::new(|_| held::clear()));
    }
}

/// Loading ended or this server was promoted: stream registrations look for entries to process.
pub fn ready() {
    for registration in registrations::all() {
        if matches!(registration.spec.kind, Kind::Stream { .. }) {
            super::streams::scan(registration);
        }
    }
}

/// The RDB's aux data: every session (`persist`).
pub fn save() -> (Vec<u8>, bool) {
    (persist::snapshot(), registrations::count() == 0)
}

pub fn load_snapshot(bytes: &[u8]) -> Result<(), String> {
    for session in persist::parse_snapshot(bytes)? {
        load(session);
    }
    Ok(())
}
