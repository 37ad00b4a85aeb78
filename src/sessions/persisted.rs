//! Sessions that outlive the process and the worker: rebuilding a session's callbacks from its
//! source on a home whose interpreter does not hold them, and the sessions of RDB aux data, the
//! AOF and the replication link (saved, loaded, resumed when loading ends).

use std::collections::VecDeque;

use redis_module::Context;

use super::apply::{ON_REGISTERED_LIMIT, on_registered, release_elsewhere};
use super::dispatch::{Caller, Input, dispatch};
use crate::cluster::message::{Event, Message};
use crate::executions;
use crate::pool;
use crate::python::held::{self, Pending};
use crate::python::{Runtime, ScriptOutcome};
use crate::redis::log;
use crate::redis::notify;
use crate::registrations::persist::{self, SavedSession};
use crate::registrations::queue;
use crate::registrations::{self, Kind};
use crate::stop::Abort;
use crate::store::RunAs;

/// Runs a session's source again to rebuild what it made: its `register()` calls take `ids` in
/// order and are returned, not applied; its `execute()` writes and `run()` calls are left out;
/// keyed time events waiting for it resume.
pub fn rerun(
    runtime: &Runtime,
    session: Option<String>,
    source: &str,
    ids: VecDeque<String>,
    run_as: RunAs,
) -> Result<Vec<Pending>, String> {
    let outcome = runtime.run_script(
        source,
        crate::jobs::host::store(0, run_as),
        Abort::with_limit(ON_REGISTERED_LIMIT),
        session,
        Some(ids),
    );
    let pending = runtime.take_registrations();
    runtime.end_job();
    match outcome {
        ScriptOutcome::Failed(text) => Err(format!("running the session's source again failed: {text}")),
        _ => Ok(pending),
    }
}

/// Rebuilds session `id`'s callbacks on this worker: runs its source again, with its `execute()`
/// writes and `run()` left out, its `register()` calls taking their old ids; calls
/// `onRegistered` of each.
pub fn restore(runtime: &Runtime, id: &str) -> Result<(), String> {
    // The registry is read with the Redis lock held (see `registrations`).
    let Some((session, _)) = crate::jobs::host::locked(|| registrations::session(id)) else {
        return Err(format!("session {id} does not exist"));
    };
    // Already rebuilt here (an event came before the load's own job).
    if session.registrations.iter().all(|r| held::callbacks_of(r).is_some()) {
        return Ok(());
    }
    let ids: VecDeque<String> = session.registrations.iter().cloned().collect();
    let run_as = RunAs::user(&session.owner);
    let pending = rerun(runtime, Some(id.to_owned()), &session.source, ids, run_as.clone())?;
    // An event preempting the rerun may have rebuilt the session meanwhile (nested): the first
    // rebuild stays, so that every registration of the session keeps one globals dict.
    if session.registrations.iter().any(|r| held::callbacks_of(r).is_some()) {
        return Ok(());
    }
    for p in pending {
        held::keep_callbacks(&p.spec.id, p.callbacks.clone());
        on_registered(runtime, id, &p.callbacks, &run_as);
    }
    Ok(())
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

/// A message from another master (docs/commands.md#cluster-mode). A registration change is
/// applied as its replicas apply it, and passed on to this master's replicas and AOF (not to
/// other masters: only the master where it was made sends it); a run id goes to the topology.
pub fn on_peer_message(ctx: &Context, sender: &str, bytes: &[u8]) {
    match Message::decode(bytes) {
        Err(why) => {
            log::log(log::Level::Verbose, &format!("rustgears: dropped a cluster message from {sender}: {why}"))
        }
        Ok(Message::Register(blob)) => match persist::parse_session(&blob) {
            Err(text) => log::warning(&format!("rustgears: a registration from {sender} was refused: {text}")),
            Ok(session) => {
                load(session);
                persist::replicate_register(ctx, &blob);
            }
        },
        Ok(Message::Unregister(id)) => {
            unregister_here(&id);
            persist::replicate_unregister(ctx, &id);
        }
        Ok(Message::Pause { pause, ids }) => super::streams::pause_here(&ids, pause),
        Ok(Message::ClearStats) => registrations::clear_all_stats(),
        Ok(Message::Hello { run_id, answer }) => {
            if crate::cluster::on_hello(ctx, sender, run_id, answer) {
                crate::jobs::distributed::peer_restarted(sender);
            }
        }
        Ok(Message::Execution { id, event: Event::Start(start) }) => super::remote::on_start(sender, id, start),
        Ok(Message::Execution { id, event }) => crate::jobs::distributed::on_execution_message(ctx, sender, id, event),
    }
}

/// Unregisters `id` as a replica does (RG.INNERUNREGISTER, a peer's message): its executions
/// are left to end.
pub fn unregister_here(id: &str) {
    if let Ok((registration, _)) = registrations::unregister(id) {
        release_elsewhere(vec![registration]);
    }
}

/// Loading starts: what it loads replaces every registration. Only an RDB's queued events are
/// replayed: an AOF's preamble saved its queue before the commands that follow it ran.
pub fn loading_started(snapshot: bool) {
    queue::loading(snapshot);
    for execution in registrations::clear() {
        let _ = executions::drop_execution(&execution);
    }
    held::invalidate_all();
    for home in 0..pool::homes() {
        pool::send(home, Box::new(|_| held::drop_stale()));
    }
}

/// Loading ended or this server was promoted: stream registrations look for entries to process,
/// keyed time events resume, the events a start-up RDB had queued are queued again.
pub fn ready(ctx: &Context) {
    requeue(ctx);
    super::time_events::resume_loaded();
    for registration in registrations::all() {
        if matches!(registration.spec.kind, Kind::Stream { .. }) {
            super::streams::scan_existing(registration);
        }
    }
}

/// Dispatches again the events the loaded RDB saved as queued (`registrations::queue`), on a
/// primary only: a replica's registrations fire nothing.
fn requeue(ctx: &Context) {
    let events = queue::take_loaded();
    if events.is_empty() || !notify::fires(ctx) {
        return;
    }
    log::notice(&format!("rustgears: {} queued events of the loaded data queued again", events.len()));
    for event in events {
        let Some(registration) = registrations::find(&event.registration) else { continue };
        let Kind::Keys { read_value, .. } = registration.spec.kind else { continue };
        let input = Input::Key { key: event.key, event: event.event, read_value, link: None };
        dispatch(ctx, registration, input, event.db, Caller::Nobody);
    }
}

/// The RDB's aux data: every session (`persist`).
pub fn save() -> (Vec<u8>, bool) {
    (persist::snapshot(), registrations::count() == 0)
}

/// A key of the module's type was loaded: a keyed time event, resumed when loading ends.
pub fn key_loaded(bytes: &[u8]) -> bool {
    match registrations::time_events::TimerKey::parse(bytes) {
        Some(key) => {
            registrations::time_events::loaded_key(key);
            true
        }
        None => false,
    }
}

pub fn load_snapshot(bytes: &[u8]) -> Result<(), String> {
    let (sessions, queued) = persist::parse_snapshot(bytes)?;
    for session in sessions {
        load(session);
    }
    queue::loaded(queued);
    Ok(())
}
